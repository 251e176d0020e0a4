"""A researcher's own script as a trial: a command run in its own process, reporting metric lines.

The command is the spec's template with each `{name}` filled from the trial's config and the
`SPECIAL` names. It runs in the trial's scratch folder (`workers.user_code.workdir`), in a process
group of its own, with the trial's config and folders in `PARETOLAB_*` variables (what the client
`paretolab.report` reads). Every stdout line that starts with `MARKER` is one metric row, a JSON
object: `##paretolab {"step": 100, "samples": 3200, "test_error": 0.2}`; a `Context` judges it as it
judges a function's `ctx.report`. The rest of stdout goes to `stdout.log` and stderr to `stderr.log`
in the scratch folder, each capped at `LOG_CAP_BYTES`.

Stopping: once the trial's outcome has ended (success under stop_on_success, max_steps, pruned,
diverged) or the worker is interrupted, the stop file `$PARETOLAB_STOP_FILE` appears (the client's
`report` returns True from then on); a process still running `STOP_GRACE_S` later gets SIGTERM, and
SIGKILL `KILL_GRACE_S` after that. Rows a script reports after its outcome has ended are dropped,
as a built-in trial has none past its last evaluation.

A curve continues across attempts: each row is also appended to `curve.jsonl` in the trial's
checkpoint folder (a local one), and an attempt whose first row comes at step s, because the script
resumed from its own checkpoint, first re-emits the saved rows before s.
"""

from __future__ import annotations

import json
import numbers
import os
import queue
import re
import select
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from paretolab.errors import clipped
from paretolab.workers.trial import Assignment, MetricRow, TrialResult
from paretolab.workers.user_code import (HEARTBEAT_S, Context, checkpoint_folder, code_root, ended_result,
                                         failed_result, workdir)

MARKER = "##paretolab "  # paretolab/report.py keeps its own copy: that file stands alone
# a line of only these keys sets the model's size (what `flops_to_success` is computed from)
SIZE_KEYS = ("n_params", "flops_per_sample")
SPECIAL = ("trial_id", "attempt", "workdir", "checkpoint_dir", "device")
STOP_GRACE_S = 10.0  # from the stop file to SIGTERM: time to save a checkpoint and exit
KILL_GRACE_S = 5.0  # from SIGTERM to SIGKILL
DRAIN_S = 5.0  # after the command exits, how long output of a process that left its group is awaited
LOG_CAP_BYTES = 16 * 2**20  # per log; what a flood prints past it is dropped
MAX_LINE_BYTES = 2**20  # a longer metric line is malformed
TAIL_BYTES = 2048  # the end of stderr kept for the error of a failed command
CHUNK_BYTES = 2**20
QUEUED_LINES = 1024  # metric lines read ahead of the worker; past that the command waits on its pipe
ERROR_CHARS = 300
CURVE_FILE = "curve.jsonl"
STOP_FILE = "stop"

_MARKER = MARKER.encode()
_EOF = object()
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # colour and cursor codes of a terminal-minded stderr


class _Refused(Exception):
    """Why the command cannot start (the trial's error)."""


# ---------------------------------------------------------------------------------------------
# the command line


def placeholders(template: tuple[str, ...]) -> set[str]:
    """The names of the `{name}` placeholders a command template uses (`{{` and `}}` are literal braces).

    Raises:
        ValueError: an argument is malformed: an unmatched brace, or a field that is not a plain name
            (`{0}`, `{}`, `{a.b}`, `{a[0]}`, `{a!r}`, `{a:.3f}`).
    """
    return {name for arg in template for _, name in _pieces(arg) if name is not None}


def _pieces(arg: str) -> list[tuple[str, str | None]]:
    """(literal text, placeholder name or None) of one template argument, in order."""
    try:
        parts = list(string.Formatter().parse(arg))
    except ValueError as e:
        raise ValueError(f"command argument {arg!r}: {e}; write {{{{ and }}}} for a literal brace") from None
    pieces = []
    for literal, name, spec, conversion in parts:
        if name is not None and (not name.strip() or name.isdigit() or "." in name or "[" in name
                                 or spec or conversion):
            field = name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise ValueError(f"command argument {arg!r}: {{{field}}} is not a placeholder; write {{name}} with a "
                             "parameter's name alone (no position, attribute, index, conversion or format), and "
                             "{{ and }} for literal braces")
        pieces.append((literal, name))
    return pieces


def _text(value) -> str:
    """A config value as a command-line argument: numbers round-trip, booleans and None as in JSON."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return json.dumps(value)


def _argv(template: tuple[str, ...], values: dict[str, str], root: str, path: str) -> list[str]:
    """The command line: placeholders filled, arguments naming files under `root` made absolute,
    `python` the worker's interpreter, a bare program name found on `path`."""
    if not template:
        raise _Refused("the command is empty")
    argv = [_filled(arg, values) for arg in template]
    # the process runs in the trial's scratch folder: a file of the spec's folder is named absolutely
    argv[1:] = [_anchored(arg, root) for arg in argv[1:]]
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the worker's own interpreter, which has paretolab and its packages
        return argv
    argv[0] = _anchored(argv[0], root)
    if os.sep not in argv[0]:
        found = shutil.which(argv[0], path=path)
        if found is None:
            raise _Refused(f"command not found: {argv[0]}")
        argv[0] = found
    return argv


def _filled(arg: str, values: dict[str, str]) -> str:
    try:
        pieces = _pieces(arg)
    except ValueError as e:
        raise _Refused(str(e)) from None
    for _, name in pieces:
        if name is not None and name not in values:
            raise _Refused(f"command argument {arg!r}: {{{name}}} names no parameter; known: "
                           f"{', '.join(sorted(values))}")
    return "".join(literal + (values[name] if name is not None else "") for literal, name in pieces)


def _anchored(arg: str, root: str) -> str:
    path = os.path.join(root, arg)
    return path if arg and os.path.isfile(path) else arg


@dataclass(frozen=True)
class _Launch:
    """What the command runs with: its arguments, environment, scratch folder and curve file."""

    argv: list[str]
    env: dict[str, str]
    folder: Path
    curve: Path | None  # None: the checkpoint folder is not local


def _launch(a: Assignment, device: str) -> _Launch:
    """Prepare the trial's folders (a fresh stop file, the config file, the checkpoint folder) and command line."""
    trial, code = a.trial, a.trial.code
    config = trial.config()
    try:
        config_json = json.dumps(config)
    except (TypeError, ValueError) as e:
        raise _Refused(f"the trial's config is not JSON: {e}") from None
    folder = workdir(trial.trial_id)
    (folder / STOP_FILE).unlink(missing_ok=True)  # an interrupted attempt leaves it behind
    (folder / "config.json").write_text(config_json)
    special = {"trial_id": trial.trial_id, "attempt": a.attempt, "workdir": str(folder), "device": device}
    checkpoints = checkpoint_folder(code, trial.trial_id) if code.checkpoints else None
    local = os.path.abspath(checkpoints) if checkpoints and "://" not in checkpoints else None
    if checkpoints:
        special["checkpoint_dir"] = local or checkpoints
    if local:
        try:
            os.makedirs(local, exist_ok=True)
        except OSError as e:
            raise _Refused(f"cannot create the checkpoint folder {local}: {e.strerror}") from None
    root = os.path.abspath(code_root(code) or ".")
    env = dict(os.environ)
    env.pop("PARETOLAB_CHECKPOINT_DIR", None)
    env.update({
        "PARETOLAB_TRIAL_ID": trial.trial_id, "PARETOLAB_ATTEMPT": str(a.attempt), "PARETOLAB_SEED": str(trial.seed),
        "PARETOLAB_CONFIG": config_json, "PARETOLAB_CONFIG_FILE": str(folder / "config.json"),
        "PARETOLAB_WORKDIR": str(folder), "PARETOLAB_DEVICE": device,
        "PARETOLAB_STOP_FILE": str(folder / STOP_FILE),
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    })
    if local is not None:
        env["PARETOLAB_CHECKPOINT_DIR"] = local
    # a Python script's prints reach stdout.log as they happen, not lost in a buffer when it is killed
    env.setdefault("PYTHONUNBUFFERED", "1")
    values = {**{k: _text(v) for k, v in special.items()}, **{k: _text(v) for k, v in config.items()}}
    argv = _argv(code.command, values, root, env.get("PATH", os.defpath))
    return _Launch(argv, env, folder, Path(local) / CURVE_FILE if local is not None else None)


# ---------------------------------------------------------------------------------------------
# the process and its output


class _Log:
    """A log file that keeps the first LOG_CAP_BYTES written to it and counts the rest."""

    def __init__(self, path: Path):
        self.path, self.cap, self.size, self.dropped = path, LOG_CAP_BYTES, 0, 0
        self.file = open(path, "wb")

    def write(self, data) -> None:
        kept = max(0, min(len(data), self.cap - self.size))
        if kept and self.file is not None:
            try:
                self.file.write(data[:kept])
            except OSError:  # a full disk: the log stops, the trial goes on
                self.file = None
        self.size += kept
        self.dropped += len(data) - kept

    def close(self) -> None:
        if self.file is None:
            return
        try:
            if self.dropped:
                self.file.write(f"\n[paretolab: {self.dropped:,} more bytes dropped; a log keeps its first "
                                f"{self.cap:,}]\n".encode())
            self.file.close()
        except OSError:
            pass


class _Splitter:
    """Cuts a process's stdout, chunk by chunk, into its metric lines (returned with their line
    numbers; None for a line longer than MAX_LINE_BYTES) and the rest (written to the log). Ordinary
    lines cost no Python step each, only a few `bytes.find`s per chunk: the 100 million lines of
    `yes | head -c 200000000` are read in 0.4 s (`| cat` takes 0.1 s; 2 cores, measured)."""

    def __init__(self, log: _Log):
        self.log = log
        self.lines = 0  # complete lines before `pending`
        self.pending = b""  # the start of a line that is, or may turn out to be, a metric line
        self.in_text = False  # the last chunk ended inside an ordinary line

    def feed(self, chunk: bytes) -> list[tuple[int, bytes | None]]:
        data, found, pos = self.pending + chunk, [], 0
        self.pending = b""
        if self.in_text:
            end = data.find(b"\n")
            pos = self._text(data, 0, len(data) if end < 0 else end + 1)
            self.in_text = end < 0
        while pos < len(data):
            if data.startswith(_MARKER, pos):
                end = data.find(b"\n", pos)
                if end < 0 and len(data) - pos <= MAX_LINE_BYTES:
                    self.pending = data[pos:]
                    break
                if end < 0 or end - pos > MAX_LINE_BYTES:
                    found.append((self.lines + 1, None))
                    self.in_text = end < 0  # the rest of it is skipped as text
                    pos = self._text(data, pos, len(data) if end < 0 else end + 1)
                    continue
                self.lines += 1
                found.append((self.lines, data[pos:end]))
                pos = end + 1
            elif len(data) - pos < len(_MARKER) and _MARKER.startswith(data[pos:]):
                self.pending = data[pos:]
                break
            else:
                end = data.find(b"\n" + _MARKER, pos)
                if end < 0:
                    end = data.rfind(b"\n", pos)
                    self.in_text = end < 0
                pos = self._text(data, pos, len(data) if end < 0 else end + 1)
        return found

    def end(self) -> list[tuple[int, bytes | None]]:
        """At the end of the output: its last line, if it had no newline."""
        rest, self.pending = self.pending, b""
        if rest.startswith(_MARKER):
            return [(self.lines + 1, rest)]
        self.log.write(rest)
        return []

    def _text(self, data: bytes, start: int, stop: int) -> int:
        self.log.write(memoryview(data)[start:stop])
        self.lines += data.count(b"\n", start, stop)
        return stop


class _Process:
    """The command's process group, the threads reading its output, and the signals that end it.

    The stdout thread queues metric lines (bounded: a command reporting faster than the worker takes
    rows waits on its pipe) and then `_EOF`; the stderr thread keeps the last TAIL_BYTES.
    """

    def __init__(self, launch: _Launch):
        """Start the command.

        Raises:
            OSError: it cannot start (FileNotFoundError: no such program).
        """
        logs = _Log(launch.folder / "stdout.log"), _Log(launch.folder / "stderr.log")
        self.started = time.monotonic()
        try:
            self.proc = subprocess.Popen(launch.argv, cwd=launch.folder, env=launch.env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError:
            for log in logs:
                log.close()
            raise
        self.stop_file = launch.folder / STOP_FILE
        self.lines: queue.Queue = queue.Queue(QUEUED_LINES)
        self.closing = threading.Event()  # the readers give up (a process that left the group holds a pipe)
        self.stderr_tail = b""
        self.stop_at: float | None = None
        self.kill_at: float | None = None
        reads = zip((self._read_stdout, self._read_stderr), logs)
        self.readers = [threading.Thread(target=read, args=(log,), name=f"{launch.folder.name}-{log.path.stem}",
                                         daemon=True) for read, log in reads]
        for reader in self.readers:
            reader.start()

    def ask_to_stop(self, now: float) -> None:
        """Create the stop file; the process has STOP_GRACE_S to exit."""
        if self.stop_at is None:
            self.stop_file.touch()
            self.stop_at = now + STOP_GRACE_S

    def terminate(self, now: float) -> None:
        """SIGTERM the group; SIGKILL follows KILL_GRACE_S later."""
        if self.kill_at is None:
            self._signal(signal.SIGTERM)
            self.kill_at = now + KILL_GRACE_S

    def escalate(self, now: float) -> None:
        if self.stop_at is not None and now >= self.stop_at:
            self.terminate(now)
        if self.kill_at is not None and now >= self.kill_at:
            self._signal(signal.SIGKILL)
            self.kill_at = float("inf")

    def wait_s(self, now: float, *deadlines: float | None) -> float:
        """How long to wait for output: until the next of its own deadlines and `deadlines`."""
        return min(d for d in (self.stop_at, self.kill_at, *deadlines) if d is not None) - now

    def kill_group(self) -> None:
        """SIGKILL every process left in the group (once the command has exited: what it left running,
        which would hold its pipes open)."""
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        """End whatever still runs of the group, and the readers."""
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self.kill_group()
        self.closing.set()
        for reader in self.readers:
            reader.join(timeout=2 * DRAIN_S)
        for pipe in (self.proc.stdout, self.proc.stderr):
            pipe.close()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):  # the group has ended
            pass

    def _chunks(self, pipe) -> Iterator[bytes]:
        fd = pipe.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not self.closing.is_set():
            if poller.poll(250):
                chunk = os.read(fd, CHUNK_BYTES)
                if not chunk:
                    return
                yield chunk

    def _read_stdout(self, log: _Log) -> None:
        splitter = _Splitter(log)
        try:
            for chunk in self._chunks(self.proc.stdout):
                for line in splitter.feed(chunk):
                    self._put(line)
            for line in splitter.end():
                self._put(line)
        finally:
            log.close()
            self._put(_EOF)

    def _read_stderr(self, log: _Log) -> None:
        try:
            for chunk in self._chunks(self.proc.stderr):
                log.write(chunk)
                self.stderr_tail = (self.stderr_tail + chunk[-TAIL_BYTES:])[-TAIL_BYTES:]
        finally:
            log.close()

    def _put(self, item) -> None:
        while not self.closing.is_set():
            try:
                self.lines.put(item, timeout=0.25)
                return
            except queue.Full:
                continue


# ---------------------------------------------------------------------------------------------
# metric lines and the curve


def _metric_row(line: bytes | None) -> dict:
    """The JSON object of a metric line.

    Raises:
        ValueError: why the line is malformed.
    """
    if line is None:
        raise ValueError(f"a metric line longer than {MAX_LINE_BYTES:,} bytes")
    text = line[len(_MARKER):].decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON after {MARKER.strip()!r} ({e.msg}, column {e.colno}): {text!r}") from None
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object after {MARKER.strip()!r}, like {{\"step\": 100, \"test_error\": "
                         f"0.2}}; got {text!r}")
    if "step" not in obj and not (obj and set(obj) <= set(SIZE_KEYS)):
        raise ValueError(f"no \"step\" in {text!r}; a metric line is like "
                         f"{MARKER}{{\"step\": 100, \"test_error\": 0.2}}")
    return obj


class _Curve:
    """The trial's rows so far, kept in its checkpoint folder (`curve.jsonl`, one JSON object a line)
    so that an attempt resuming from the script's own checkpoint continues the curve, as
    `Context.load_checkpoint` does for a function. Best effort: a file that cannot be written is left."""

    def __init__(self, path: Path):
        self.path = path
        self.saved = _read_curve(path)
        self.file = None
        self.started = False

    def start(self, ctx: Context, step: int) -> None:
        """Before the attempt's first row, at `step`: re-emit the saved rows before it, and keep only those."""
        self.started = True
        kept = [r for r in self.saved if r["step"] < step]
        for r in kept:
            ctx.carry(MetricRow(ctx.trial_id, ctx.attempt, r["step"], r["samples"], r["wall_s"], r["values"]))
        try:
            tmp = self.path.with_name(f".{CURVE_FILE}.{os.getpid()}.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path)
            self.file = open(self.path, "a")
        except OSError:
            self.file = None

    def add(self, row: MetricRow) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps({"step": row.step, "samples": row.samples, "wall_s": row.wall_s,
                                        "values": row.values}) + "\n")
            self.file.flush()
        except OSError:
            self.file = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def _read_curve(path: Path) -> list[dict]:
    """The rows of `path` up to its first unreadable line (one torn by a crash)."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in lines:
        try:
            r = json.loads(line)
            row = {"step": int(r["step"]), "samples": r["samples"], "wall_s": float(r["wall_s"]), "values": r["values"]}
        except (ValueError, TypeError, KeyError):
            break
        if not isinstance(row["values"], dict) or (rows and row["step"] <= rows[-1]["step"]):
            break
        rows.append(row)
    return rows


def _report(ctx: Context, curve: _Curve | None, line: bytes | None) -> None:
    """Hand one metric line to the context (and the curve file).

    Raises:
        ValueError: the line is malformed, or the context refuses it.
    """
    obj = _metric_row(line)
    if "step" not in obj:  # the model's size: {"n_params": ..., "flops_per_sample": ...}
        for key, value in obj.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{key} must be a number >= 0, got {value!r}")
            setattr(ctx, key, value)
        return
    step, samples = obj.pop("step"), obj.pop("samples", None)
    if curve is not None and not curve.started and type(step) is int and step >= 0:
        curve.start(ctx, step)
    try:
        ctx.report(step=step, samples=samples, **obj)
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: an integer float() cannot hold
        raise ValueError(str(e).removeprefix("ctx.report: ")) from None
    if curve is not None:
        curve.add(ctx._rows[-1])


# ---------------------------------------------------------------------------------------------
# running one trial


def run_command(a: Assignment, device: str, interrupted: threading.Event) -> Iterator[MetricRow | TrialResult | None]:
    """Run the trial's command in its own process, yielding the rows it reports (None about every
    HEARTBEAT_S while it reports nothing), then its `TrialResult`; nothing more when the worker was
    interrupted before the trial ended (it runs again on resume)."""
    start = time.perf_counter()
    ctx = Context(a, device, interrupted)
    try:
        launch = _launch(a, device)
    except (_Refused, OSError) as e:
        reason = str(e) if isinstance(e, _Refused) else f"cannot prepare the trial's scratch folder: {e}"
        yield failed_result(a, clipped(reason, ERROR_CHARS), time.perf_counter() - start, ctx)
        return
    try:
        process = _Process(launch)
    except OSError as e:
        reason = f"command not found: {launch.argv[0]}" if isinstance(e, FileNotFoundError) else \
            f"cannot run {launch.argv[0]}: {e.strerror or e}"  # not executable, not a program
        yield failed_result(a, clipped(reason, ERROR_CHARS), time.perf_counter() - start, ctx)
        return
    curve = _Curve(launch.curve) if launch.curve is not None else None
    try:
        reason = yield from _follow(process, ctx, a.trial.code.timeout_s, interrupted, curve)
    finally:
        process.close()
        if curve is not None:
            curve.close()
    if reason is None and ctx.outcome.status is None and interrupted.is_set():
        return  # stopped by an interrupt: the trial has not ended (it runs again on resume)
    yield _verdict(a, ctx, process, reason, time.perf_counter() - start)


def _follow(process: _Process, ctx: Context, timeout_s: float | None, interrupted: threading.Event,
            curve: _Curve | None):
    """Yield the rows the process reports (None when nothing came for HEARTBEAT_S) until it has
    exited and its output is read; returns why the trial failed meanwhile (a malformed line, the
    timeout), or None."""
    reason, eof, exited_at = None, False, None
    deadline = None if timeout_s is None else process.started + timeout_s
    beat = time.monotonic()  # when something was last yielded
    while True:
        now = time.monotonic()
        if ctx.outcome.status is not None or interrupted.is_set():
            process.ask_to_stop(now)
        elif reason is None and deadline is not None and now >= deadline:
            reason = f"timed out after {timeout_s:g} s (timeout_s)"
            process.terminate(now)
        process.escalate(now)
        if exited_at is None and process.proc.poll() is not None:
            exited_at = now
            process.kill_group()
        if exited_at is not None and (eof or now - exited_at > DRAIN_S):
            return reason
        timing = deadline if reason is None and process.stop_at is None else None
        wait = max(0.001, process.wait_s(now, beat + HEARTBEAT_S, timing))
        if eof:  # the output is read; the process has not exited yet
            try:
                process.proc.wait(wait)
            except subprocess.TimeoutExpired:
                pass
        else:
            try:
                item = process.lines.get(timeout=wait)
            except queue.Empty:
                item = None
            if item is _EOF:
                eof = True
            elif item is not None and reason is None and ctx.outcome.status is None:  # once ended, lines are dropped
                try:
                    _report(ctx, curve, item[1])
                except ValueError as e:
                    reason = clipped(f"stdout line {item[0]}: {e}", ERROR_CHARS)
                    process.terminate(now)
        if not ctx._out.empty():
            while not ctx._out.empty():
                yield ctx._out.get_nowait()
        elif time.monotonic() >= beat + HEARTBEAT_S:
            yield None  # nothing new: a chance for the worker to send the rows that wait
        else:
            continue
        beat = time.monotonic()


def _verdict(a: Assignment, ctx: Context, process: _Process, reason: str | None, wall: float) -> TrialResult:
    """The result of an attempt whose process has ended."""
    if reason is not None:
        return failed_result(a, reason, wall, ctx)
    if ctx.outcome.status is not None:  # ended by its outcome, and stopped if need be: its exit does not matter
        return ended_result(a, ctx, wall, {})
    code, last = process.proc.returncode, _last_line(process.stderr_tail)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return failed_result(a, f"killed by signal {name}" + (f": {last}" if last else ""), wall, ctx)
    if code > 0:
        return failed_result(a, f"exit status {code}" + (f": {last}" if last else " (nothing on stderr)"), wall, ctx)
    if not ctx._rows:
        return failed_result(a, f"the command reported no metrics; print lines like {MARKER}{{\"step\": 100, "
                                f"\"{a.trial.success.metric}\": 0.2}} (paretolab.report does)", wall, ctx)
    metric = a.trial.success.metric
    if metric not in ctx.reported:
        return failed_result(a, f"the success metric {metric!r} was never reported (reported: "
                                f"{', '.join(sorted(ctx.reported)) or 'none'}); report it, or set success.metric "
                                "to one of those", wall, ctx)
    return ended_result(a, ctx, wall, {})


def _last_line(tail: bytes) -> str:
    """The last non-empty line of stderr, printable and clipped."""
    text = _ANSI.sub("", tail.decode("utf-8", "replace"))
    for line in reversed(text.splitlines()):
        line = "".join(c if c.isprintable() else " " if c == "\t" else "" for c in line).strip()
        if line:
            return clipped(line, ERROR_CHARS)
    return ""

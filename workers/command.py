"""A researcher's own script as a trial: a command run in its own process, reporting metric lines.

The command is the spec's template with each `{name}` filled from the trial's config and the
`SPECIAL` names. It runs in the trial's scratch folder (`workers.user_code.workdir`), in a process
group of its own, with the trial's config and folders in `PARETOLAB_*` variables (what the client
`paretolab.report` reads). Every stdout line that starts with `MARKER` is one metric row, a JSON
object: `##paretolab {"step": 100, "samples": 3200, "test_error": 0.2}`; a `Context` judges it as it
judges a function's `ctx.report`. The rest of stdout goes to `stdout.log` and stderr to `stderr.log`
in the scratch folder, each capped (`workers.process`, which runs the process and reads its output).

Stopping: once the trial's outcome has ended (success under stop_on_success, max_steps, pruned,
diverged) or the worker is interrupted, the stop file `$PARETOLAB_STOP_FILE` appears (the client's
`report` returns True from then on); a process still running `process.STOP_GRACE_S` later gets
SIGTERM, and SIGKILL `process.KILL_GRACE_S` after that. Rows a script reports after its outcome has ended are dropped,
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
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from paretolab.vocabulary.errors import clipped
from paretolab.workers import process as processes
from paretolab.workers.process import _MARKER, EOF, MARKER, Launch, Process
from paretolab.vocabulary.trial import Assignment, MetricRow, TrialResult
from paretolab.workers.checkpoints import checkpoint_folder
from paretolab.workers.importing import code_root
from paretolab.workers.user_code import HEARTBEAT_S, Context, ended_result, failed_result, workdir

# a line of only these keys sets the model's size (what `flops_to_success` is computed from)
SIZE_KEYS = ("n_params", "flops_per_sample")
SPECIAL = ("trial_id", "attempt", "workdir", "checkpoint_dir", "device")
ERROR_CHARS = 300
CURVE_FILE = "curve.jsonl"

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


def _launch(a: Assignment, device: str) -> Launch:
    """Prepare the trial's folders (a fresh stop file, the config file, the checkpoint folder) and command line."""
    trial, code = a.trial, a.trial.code
    config = trial.config()
    try:
        config_json = json.dumps(config)
    except (TypeError, ValueError) as e:
        raise _Refused(f"the trial's config is not JSON: {e}") from None
    folder = workdir(trial.trial_id)
    (folder / processes.STOP_FILE).unlink(missing_ok=True)  # an interrupted attempt leaves it behind
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
        "PARETOLAB_STOP_FILE": str(folder / processes.STOP_FILE),
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
    })
    if local is not None:
        env["PARETOLAB_CHECKPOINT_DIR"] = local
    # a Python script's prints reach stdout.log as they happen, not lost in a buffer when it is killed
    env.setdefault("PYTHONUNBUFFERED", "1")
    values = {**{k: _text(v) for k, v in special.items()}, **{k: _text(v) for k, v in config.items()}}
    argv = _argv(code.command, values, root, env.get("PATH", os.defpath))
    return Launch(argv, env, folder, Path(local) / CURVE_FILE if local is not None else None)


# ---------------------------------------------------------------------------------------------
# metric lines and the curve


def _metric_row(line: bytes | None) -> dict:
    """The JSON object of a metric line.

    Raises:
        ValueError: why the line is malformed.
    """
    if line is None:
        raise ValueError(f"a metric line longer than {processes.MAX_LINE_BYTES:,} bytes")
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
        process = Process(launch)
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


def _follow(process: Process, ctx: Context, timeout_s: float | None, interrupted: threading.Event,
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
        if exited_at is not None and (eof or now - exited_at > processes.DRAIN_S):
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
            if item is EOF:
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


def _verdict(a: Assignment, ctx: Context, process: Process, reason: str | None, wall: float) -> TrialResult:
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

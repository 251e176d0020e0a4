"""A command's process: started in a process group of its own, its output read by threads, its end
brought about by a stop file, SIGTERM and SIGKILL.

stdout is cut into metric lines (those starting with `MARKER`, queued for the trial) and the rest,
which goes to `stdout.log`; stderr goes to `stderr.log`, its last `TAIL_BYTES` kept for a failed
command's error. Each log is capped at `LOG_CAP_BYTES`: a command that floods its output grows
neither the worker's memory nor the disk without bound. `workers.command` turns the metric lines
into the trial's rows and its result.
"""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MARKER = "##paretolab "  # paretolab/report.py keeps its own copy: that file stands alone
STOP_FILE = "stop"
STOP_GRACE_S = 10.0  # from the stop file to SIGTERM: time to save a checkpoint and exit
KILL_GRACE_S = 5.0  # from SIGTERM to SIGKILL
DRAIN_S = 5.0  # after the command exits, how long output of a process that left its group is awaited
LOG_CAP_BYTES = 16 * 2**20  # per log; what a flood prints past it is dropped
MAX_LINE_BYTES = 2**20  # a longer metric line is malformed
TAIL_BYTES = 2048  # the end of stderr kept for the error of a failed command
CHUNK_BYTES = 2**20
QUEUED_LINES = 1024  # metric lines read ahead of the worker; past that the command waits on its pipe
EOF = object()  # what the stdout queue ends with

_MARKER = MARKER.encode()


@dataclass(frozen=True)
class Launch:
    """What the command runs with: its arguments, environment, scratch folder and curve file."""

    argv: list[str]
    env: dict[str, str]
    folder: Path
    curve: Path | None  # None: the checkpoint folder is not local


class Log:
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


class Splitter:
    """Cuts a process's stdout, chunk by chunk, into its metric lines (returned with their line
    numbers; None for a line longer than MAX_LINE_BYTES) and the rest (written to the log). Ordinary
    lines cost no Python step each, only a few `bytes.find`s per chunk: the 100 million lines of
    `yes | head -c 200000000` are read in 0.4 s (`| cat` takes 0.1 s; 2 cores, measured)."""

    def __init__(self, log: Log):
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


class Process:
    """The command's process group, the threads reading its output, and the signals that end it.

    The stdout thread queues metric lines (bounded: a command reporting faster than the worker takes
    rows waits on its pipe) and then `EOF`; the stderr thread keeps the last TAIL_BYTES.
    """

    def __init__(self, launch: Launch):
        """Start the command.

        Raises:
            OSError: it cannot start (FileNotFoundError: no such program).
        """
        logs = Log(launch.folder / "stdout.log"), Log(launch.folder / "stderr.log")
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

    def _read_stdout(self, log: Log) -> None:
        splitter = Splitter(log)
        try:
            for chunk in self._chunks(self.proc.stdout):
                for line in splitter.feed(chunk):
                    self._put(line)
            for line in splitter.end():
                self._put(line)
        finally:
            log.close()
            self._put(EOF)

    def _read_stderr(self, log: Log) -> None:
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

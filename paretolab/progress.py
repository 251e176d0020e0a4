"""The live view of a run: a rich progress bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paretolab.orchestrator.events import Counts, Observer
from paretolab.terminal import printable

PLAIN_EVERY_S = 10.0  # how often a non-terminal run prints a line


class ProgressView(Observer):
    """Shows done/running/failed, trials per second and ETA while a sweep runs. The rate and ETA are
    the run's own (`rate`), not rich's: rich's speed is taken between its last samples, and a pack of
    trials that end at the same instant made it thousands of trials per second."""

    def __init__(self, console: Console | None = None, sweep: str = "sweep"):
        self.console = console or Console(file=sys.stdout)
        self.sweep = sweep
        self.live = self.console.is_terminal
        self._bar: Progress | None = None
        self._task = None
        self._last_line = 0.0

    def on_start(self, sweep: str, counts: Counts) -> None:
        self.sweep = sweep

    def on_tick(self, counts: Counts) -> None:
        if self.live:
            self._draw(counts)
        elif time.monotonic() - self._last_line >= PLAIN_EVERY_S or counts.done == counts.total:
            self.console.print(line(counts), highlight=False)
            self._last_line = time.monotonic()

    def on_stopping(self, trials: int, grace_s: float) -> None:
        self.close()
        self._bar = None
        self.console.print(f"stopping: {trials} trial{'s' if trials != 1 else ''} of your code asked to stop "
                           f"(up to {grace_s:.0f} s, to save checkpoints); Ctrl-C again to quit now",
                           highlight=False, markup=False)

    def _draw(self, counts: Counts) -> None:
        if self._bar is None:
            # the user's name, shown as written: no markup, and no format fields (a column's text is a template)
            name = printable(self.sweep).replace("{", "{{").replace("}", "}}")
            self._bar = Progress(TextColumn(name, style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 TextColumn("eta {task.fields[eta]}"), console=self.console)
            self._bar.start()
            self._task = self._bar.add_task(self.sweep, total=counts.total, detail="", eta="?")
        # an adaptive search's total grows as it submits
        self._bar.update(self._task, total=counts.total, completed=counts.done, detail=detail(counts),
                         eta=eta(counts))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def rate(counts: Counts, now: float | None = None) -> float:
    """Trials ended per second since the run started: trials that end together (a pack) count as
    many trials over the time they took, not as a burst between two instants."""
    elapsed = (time.monotonic() if now is None else now) - counts.started_at
    return counts.done / elapsed if elapsed > 0 else 0.0


def eta(counts: Counts, now: float | None = None) -> str:
    """Time left at the run's rate so far; `?` until a trial has ended."""
    r = rate(counts, now)
    return f"{(counts.total - counts.done) / r:.0f} s" if r > 0 else "?"


def detail(counts: Counts) -> str:
    parts = [f"running {counts.running}", f"ok {counts.succeeded}"]
    if counts.failed:
        parts.append(f"[red]failed {counts.failed}[/]")
    if counts.diverged:
        parts.append(f"diverged {counts.diverged}")
    if counts.retried:
        parts.append(f"retried {counts.retried}")
    parts.append(f"{rate(counts):.1f} trials/s")
    return " | ".join(parts)


def line(counts: Counts) -> str:
    now = time.monotonic()
    return (f"done {counts.done}/{counts.total}, running {counts.running}, succeeded {counts.succeeded}, "
            f"failed {counts.failed}, diverged {counts.diverged}, {rate(counts, now):.1f} trials/s, "
            f"eta {eta(counts, now)}")

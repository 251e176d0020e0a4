"""The live view of a run: a rich progress bar on a terminal, the same bar kept up to date in a
Jupyter cell's output, plain lines elsewhere."""

from __future__ import annotations

import io
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from paretolab.orchestrator.events import Counts, Observer, RunSummary
from paretolab.terminal import printable

PLAIN_EVERY_S = 10.0  # how often a non-terminal run prints a line
# A notebook's bar is one output updated in place (IPython's display_id): it works in every frontend
# (JupyterLab, Notebook, VS Code, nbclient) without ipywidgets, which rich's own Jupyter `Live` needs,
# and it is redrawn from the driver's thread only. As rich's Jupyter output is written:
NOTEBOOK_HTML = ('<pre style="white-space:pre;overflow-x:auto;line-height:normal;'
                 "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>")


def wanted(progress: bool | None, console: Console) -> bool:
    """Whether a run shows its progress: `progress` if given, else when `console` is a Jupyter
    kernel's output or a terminal (not a file or a pipe, as under a test runner or in a job's log)."""
    return progress if progress is not None else console.is_jupyter or console.is_terminal


class ProgressView(Observer):
    """Shows done/running/failed, trials per second and ETA while a sweep runs. The rate and ETA are
    the run's own (`rate`), not rich's: rich's speed is taken between its last samples, and a pack of
    trials that end at the same instant made it thousands of trials per second."""

    def __init__(self, console: Console | None = None, sweep: str = "sweep"):
        self.console = console or Console(file=sys.stdout)
        self.sweep = sweep
        self.notebook = self.console.is_jupyter  # the bar as a cell output, updated in place
        self.live = self.console.is_terminal or self.notebook
        self._bar: Progress | None = None
        self._task = None
        self._cell = None  # the notebook's display handle
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
        self._bar, self._cell = None, None
        self.console.print(f"stopping: {trials} trial{'s' if trials != 1 else ''} of your code asked to stop "
                           f"(up to {grace_s:.0f} s, to save checkpoints); Ctrl-C again to quit now",
                           highlight=False, markup=False)

    def _draw(self, counts: Counts) -> None:
        if self._bar is None:
            # the user's name, shown as written: no markup, and no format fields (a column's text is a template)
            name = printable(self.sweep).replace("{", "{{").replace("}", "}}")
            self._bar = Progress(TextColumn(name, style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                                 TextColumn("eta {task.fields[eta]}"), console=self.console,
                                 auto_refresh=not self.notebook)
            if not self.notebook:
                self._bar.start()
            self._task = self._bar.add_task(self.sweep, total=counts.total, detail="", eta="?")
        # an adaptive search's total grows as it submits
        self._bar.update(self._task, total=counts.total, completed=counts.done, detail=detail(counts),
                         eta=eta(counts))
        if self.notebook:
            self._show()

    def _show(self) -> None:
        """Draw the bar into the cell's output: shown the first time, replaced in place after."""
        from IPython.display import display

        page = Console(file=io.StringIO(), record=True, width=self.console.width, force_terminal=True,
                       force_jupyter=False, color_system="truecolor")
        page.print(self._bar)
        shown = {"text/plain": page.export_text(clear=False).rstrip("\n"),
                 "text/html": page.export_html(inline_styles=True, code_format=NOTEBOOK_HTML)}
        if self._cell is None:
            self._cell = display(shown, raw=True, display_id=True)
        else:
            self._cell.update(shown, raw=True)

    def say(self, text: str) -> None:
        """Print a line of the run's own words (its headline, say): printable, no markup."""
        self.console.print(printable(text), markup=False, highlight=False)

    def close(self) -> None:
        if self._bar is None:
            return
        if self.notebook:
            self._show()  # the last counts stay in the cell
        else:
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


def headline(s: RunSummary) -> str:
    """The line that ends a run, by its `RunSummary.mode`: what it did, with its counts (the first line
    `paretolab run` prints, and the last one a notebook's run shows)."""
    if s.mode == "nothing_to_run":
        return f"{s.sweep}: nothing to run: all {s.total} trials are in the store"
    if s.mode in ("ran", "searched"):
        return (f"{s.sweep}: {s.total} trials ({s.ran} run now, {s.already_done} already in the store); "
                f"{s.succeeded} succeeded, {s.failed} failed, {s.diverged} diverged"
                + (f", {s.pruned} pruned" if s.pruned else "") + f" in {s.wall_s:.1f} s")
    if s.mode == "dry_run_search_unlisted":  # an Optuna search: its trials are asked as it runs
        return (f"{s.sweep}: up to {s.total} trials, chosen as the search runs (none listed ahead; "
                f"those {s.store} holds are not run again)")
    if s.mode == "dry_run_too_large":
        return (f"{s.sweep}: {s.total:,} trials (not checked against {s.store}: "
                "a grid this large is compared with the store when it runs)")
    if s.mode == "dry_run_search":  # a frontier search or tuning: it runs some of the grid's trials
        return (f"{s.sweep}: up to {s.total} trials (the grid's), {s.already_done} already in {s.store}; "
                "the search runs only those it needs")
    assert s.mode == "dry_run", s.mode
    return f"{s.sweep}: {s.total} trials, {s.already_done} already in {s.store}, {s.total - s.already_done} to run"

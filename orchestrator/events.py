"""What a run tells its observers (the progress view, tests): counts and events, free of Ray."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from paretolab.vocabulary.trial import Report


@dataclass
class Counts:
    """Progress of a run. `done` counts every ended trial, `failed`, `diverged` and `pruned` (stopped
    early by a search's pruner; not failed) included; `running` counts trials in training (a worker
    trains a pack of trials together, or one at a time unpacked). `started_at`: when the run began
    (`time.monotonic()`), for its rate."""

    total: int
    done: int = 0
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    pruned: int = 0
    running: int = 0
    retried: int = 0
    started_at: float = field(default_factory=time.monotonic)


class Observer:
    """Receives the scheduler's events, on the driver thread. The defaults do nothing."""

    def on_start(self, sweep: str, counts: Counts) -> None:
        """The run of `sweep` is about to dispatch its first trial."""

    def on_report(self, report: Report) -> None:
        """A worker's report arrived (before its rows are written)."""

    def on_tick(self, counts: Counts) -> None:
        """Called a few times a second with the current counts."""

    def on_stopping(self, trials: int, grace_s: float) -> None:
        """Ctrl-C: `trials` trials of the researcher's code were asked to stop and are given up to
        `grace_s` seconds to (to save a checkpoint, say)."""


class Interrupted(Exception):
    """The run was stopped by Ctrl-C after flushing what had arrived."""

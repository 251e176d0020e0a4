"""What a run tells its observers (the progress view, tests) and, at its end, its caller: counts,
events and the summary, free of Ray."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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
    """The run was stopped by Ctrl-C (in a notebook, the kernel's interrupt) after flushing what had
    arrived. Its message says how to resume from Python; `paretolab run` prints the command instead."""

    def __init__(self, message: str = ("interrupted: every result that arrived is in the store; run the same "
                                       "paretolab.run(...) call again to resume (only the trials the store "
                                       "lacks run)")):
        super().__init__(message)


# What a run did, as `RunSummary.mode` says it.
RunMode = Literal["ran", "nothing_to_run", "searched",
                  "dry_run", "dry_run_search", "dry_run_search_unlisted", "dry_run_too_large"]


@dataclass(frozen=True)
class RunSummary:
    """What a run did. `mode`:

    - `ran`: the grid's trials that the store did not hold ran now (`ran` of them);
    - `nothing_to_run`: the store held every trial; nothing ran (the sweep's row is written);
    - `searched`: a search or per-cell tuning ran (`ran` trials now; none when the store already held
      its answer); `search` is its answer;
    - `dry_run`: the grid counted against the store; nothing ran;
    - `dry_run_search`: a frontier search or tuning counted: up to `total` trials (the grid's),
      `already_done` of them in the store; `search` says what it will do;
    - `dry_run_search_unlisted`: an Optuna search, which asks its trials as it runs: up to `total`
      (points x seeds), none listed ahead and none counted as done (`already_done` is None);
    - `dry_run_too_large`: a grid of more than `orchestrator.run.CONFIRM_ABOVE_TRIALS` trials,
      counted but not compared with the store (`already_done` is None).

    `ran` counts trials run now; `already_done` those the store already had."""

    mode: RunMode
    sweep: str
    store: str | Path
    total: int
    already_done: int | None
    axes: tuple[str, ...] = ()
    ran: int = 0
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    pruned: int = 0  # stopped early by a search's pruner (not failed)
    wall_s: float = 0.0
    first_configs: list[dict] = field(default_factory=list)
    search: object = None  # an adaptive run's answer (frontier boundaries, Optuna's best trials, tuned values); a dry run: what it will do
    warning: str | None = None  # a dry run: what would stop `run` here (a worker needs a GPU this machine lacks, say)

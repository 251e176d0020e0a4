"""Adaptive search: a `Strategy` proposes trials, the driver answers them from the store or runs them.

One loop (`drive`) serves every adaptive mode; each mode is a strategy in its own module
(`frontier_search.py`, `optuna_search.py`, `tune.py`), chosen by the type of the sweep's spec
through the table in `search.py`. A proposed trial that the store already holds is answered at
once from its `trials` row and never rerun (so a killed search, run again, replays its past
decisions from the store and goes on where it stopped); the rest go to the `Scheduler`, whose
workers stay alive across batches.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from paretolab.orchestrator.grid import parameter_names
from paretolab.store import Store
from paretolab.vocabulary.schema import COST_COLUMNS, MEDIAN_PREFIX, RESULT_COLUMNS, final_column, result_column
from paretolab.vocabulary.sweep import Sweep
from paretolab.vocabulary.trial import Pruning, TrialConfig, TrialResult


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as the search sees it: its status, success, and `metrics`, named as the
    columns of its `trials` row: the final metrics (`final_test_error`), the costs to success, steps,
    samples and wall_s (a cost is None if it never succeeded)."""

    trial_id: str
    status: str
    success: bool
    metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def of_result(cls, r: TrialResult) -> Outcome:
        metrics = {**{final_column(k): v for k, v in r.final.items()}, **{k: getattr(r, k) for k in RESULT_COLUMNS}}
        return cls(r.trial_id, r.status, bool(r.success), metrics)

    @classmethod
    def of_row(cls, row: dict) -> Outcome:
        return cls(row["trial_id"], row["status"], bool(row.get("success")), row)

    @property
    def counts(self) -> bool:
        """Whether this trial is an outcome of its cell (failed and pruned trials are not)."""
        return self.status in ("finished", "diverged")


class Strategy(ABC):
    """An adaptive search. Called on the driver thread only; never sees Ray, and reads the store
    only through its readers (`Store.results`, `step_quantiles`, `step_span`).

    Built as `cls(sweep, candidates, store_root)` (`search.strategy_for`): the sweep, its grid's
    trials, and the folder of a local store (None on an object store). The driver calls
    `propose()` again whenever an outcome arrived; each proposed trial is answered by exactly one
    later `observe(trial, outcome)` (once per proposal, even if two proposals are the same trial).
    `propose()` may return nothing while it waits for outcomes; the search ends when `done()` holds.
    """

    # Whether `observe` records outcomes somewhere outside the store (Optuna's journal): the driver
    # then writes every arrived result to the store first, so that a driver killed between the two
    # never leaves a study that counts a trial the store does not hold.
    persists: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def describe(cls, sweep: Sweep) -> str:
        """One line saying what the search of `sweep` will do (a dry run prints it)."""

    @classmethod
    def asked_as_it_goes(cls, sweep: Sweep) -> int | None:
        """How many trials the search will ask when it chooses them as it runs, none listed ahead (a dry
        run then lists none and counts none as done); None for a search over the trials of the grid."""
        return None

    @abstractmethod
    def propose(self) -> list[TrialConfig]:
        """The trials to run next (possibly none)."""

    @abstractmethod
    def observe(self, trial: TrialConfig, outcome: Outcome) -> None:
        """`trial`, proposed earlier, ended with `outcome`."""

    @abstractmethod
    def done(self) -> bool:
        """Whether the search is over."""

    @abstractmethod
    def result(self) -> object:
        """The search's answer (a dataclass with a `rows()` method for printing)."""

    def start(self, n_workers: int) -> None:
        """Called once before the first `propose`, with the number of workers to keep busy."""

    def pruning(self, store: Store) -> Pruning | None:
        """The pruning rule for the trials proposed now (None: run them to their end)."""
        return None

    def records(self, sweep, used: list[TrialConfig]) -> list[tuple[object, list[TrialConfig]]]:
        """The sweep rows to write, as (Sweep, its trials), given the trials proposed so far."""
        return [(sweep, used)]

    def answered(self, store: Store) -> list[TrialConfig] | None:
        """The trials the search used, if it is over before it starts and `store` holds each of them
        (its answer then needs no run); else None."""
        return None

    def close(self) -> None:
        """Release what the strategy holds (storage handles); called once, also after an error."""


def stored_outcomes(store: Store, ids: list[str], retry_failed: bool = False) -> dict[str, Outcome]:
    """The outcomes of the trials in `ids` whose latest attempt ended in the store."""
    return {r["trial_id"]: Outcome.of_row(r) for r in store.results(ids, retry_failed)}


def drive(strategy: Strategy, scheduler, store: Store, attempts: dict[str, int],
          on_trials: Callable[[list[TrialConfig]], None], retry_failed: bool = False) -> object:
    """Run `strategy` to its end on the started `scheduler`, answering from `store` what it holds.

    Args:
        on_trials: called with every batch of proposed trials, before it runs (the api adds
            them to the sweep's row, so the analysis commands see the search's trials).
    Returns:
        `strategy.result()`.
    Raises:
        RuntimeError: the strategy proposes nothing, waits for nothing and is not done (a bug).
    """
    waiting: dict[str, list[TrialConfig]] = {}  # trial id -> proposals waiting for it
    ended: dict[str, Outcome] = {}  # outcomes of this run (the store gets them only at its next flush)
    strategy.start(scheduler.n_workers)
    while not strategy.done():
        batch = strategy.propose()
        if batch:
            on_trials(batch)
            fresh = list({t.trial_id: t for t in batch if t.trial_id not in waiting}.values())
            known = {t.trial_id: ended[t.trial_id] for t in fresh if t.trial_id in ended}
            known.update(stored_outcomes(store, [t.trial_id for t in fresh if t.trial_id not in known], retry_failed))
            to_run = [t for t in fresh if t.trial_id not in known]
            scheduler.submit(to_run, attempts, strategy.pruning(store) if to_run else None)
            for t in batch:
                waiting.setdefault(t.trial_id, []).append(t)
            if known:
                for tid, outcome in known.items():
                    for t in waiting.pop(tid):
                        strategy.observe(t, outcome)
                continue
        if not waiting:
            if strategy.done():
                break
            raise RuntimeError(f"{type(strategy).__name__} proposed nothing and waits for nothing")
        results = scheduler.wait_any()
        if strategy.persists and results:
            scheduler.writer.flush()  # the store holds a result before the study may record it
        for r in results:
            ended[r.trial_id] = Outcome.of_result(r)
            for t in waiting.pop(r.trial_id, []):
                strategy.observe(t, ended[r.trial_id])
    return strategy.result()


def fixed_at(sweep: Sweep, params: dict) -> Sweep:
    """`sweep` with `params` fixed (added to, or replacing, its `fixed`) and no search or tuning:
    the plain sweep whose trials are those of one point of a search or one tuned value."""
    return dataclasses.replace(sweep, fixed=tuple(sorted({**dict(sweep.fixed), **params}.items())),
                               search=None, tune=None)


def cell_score(metric: str, config: TrialConfig, outcomes: list[Outcome]) -> float | None:
    """A cell's value of `metric`, as `paretolab cells` reports it: a parameter's value; for a cost
    (`*_to_success`) the median over the seeds that succeeded, None when fewer than half did; for
    `steps`, `samples`, `wall_s` or a metric the median of its finite final values (the `trials`
    column `final_<metric>`; None if none). `config` is one trial of the cell, `outcomes` its
    seeds' (failed and pruned ones do not count)."""
    columns = config.columns()
    if metric in columns:
        v = columns[metric]
        return float(v) if _finite(v) else None
    counted = [o for o in outcomes if o.counts]
    if metric in COST_COLUMNS:
        costs = [o.metrics.get(metric) for o in counted if o.success]
        if not counted or 2 * len(costs) < len(counted):
            return None
        return _median([float(c) for c in costs if _finite(c)])
    column = result_column(metric)
    return _median([float(o.metrics[column]) for o in counted if _finite(o.metrics.get(column))])


def score_name(metric: str, sweep: Sweep) -> str:
    """How a search's answer names the `cell_score` of `metric` in `sweep`: a parameter by its own
    name, any other score by the statistic it is, `median_<metric>` (`median_steps_to_success`)."""
    return metric if metric in parameter_names(sweep) else MEDIAN_PREFIX + metric


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def plural(count: int, noun: str) -> str:
    """`1 seed`, `8 seeds`: a count for a strategy's `describe` line."""
    return f"{count} {noun}" + ("" if count == 1 else "s")

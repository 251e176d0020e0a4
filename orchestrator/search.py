"""Adaptive search: a `Strategy` proposes trials, the driver answers them from the store or runs them.

One loop (`drive`) serves every adaptive mode: frontier search by bisection
(`orchestrator.frontier_search`), Optuna ask-and-tell (`OptunaStrategy`, below) and per-cell
tuning (`orchestrator.tune`). A proposed trial that the store already holds is answered at once
from its `trials` row and never rerun (so a killed search, run again, replays its past decisions
from the store and goes on where it stopped); the rest go to the `Scheduler`, whose workers stay
alive across batches.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from paretolab.analysis.store import Store
from paretolab.workers.trial import TrialConfig, TrialResult

ENDED = ("finished", "diverged", "failed", "pruned")
COST_METRICS = ("steps_to_success", "samples_to_success", "flops_to_success")
RESULT_METRICS = (*COST_METRICS, "steps", "samples", "wall_s")


@dataclass(frozen=True)
class Outcome:
    """How a trial ended, as the search sees it: its status, success, and `metrics` (the final
    metrics, the costs to success, steps, samples and wall_s; a cost is None if it never succeeded)."""

    trial_id: str
    status: str
    success: bool
    metrics: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def of_result(cls, r: TrialResult) -> Outcome:
        metrics = {**r.final, **{k: getattr(r, k) for k in RESULT_METRICS}}
        return cls(r.trial_id, r.status, bool(r.success), metrics)

    @classmethod
    def of_row(cls, row: dict) -> Outcome:
        return cls(row["trial_id"], row["status"], bool(row.get("success")), row)

    @property
    def counts(self) -> bool:
        """Whether this trial is an outcome of its cell (failed and pruned trials are not)."""
        return self.status in ("finished", "diverged")


class Strategy(ABC):
    """An adaptive search. Called on the driver thread only; never sees Ray or the store.

    The driver calls `propose()` again whenever an outcome arrived; each proposed trial is answered
    by exactly one later `observe(trial, outcome)` (once per proposal, even if two proposals are the
    same trial). `propose()` may return nothing while it waits for outcomes; the search ends when
    `done()` holds.
    """

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

    def close(self) -> None:
        """Release what the strategy holds (storage handles); called once, also after an error."""


def stored_outcomes(store: Store, ids: list[str], retry_failed: bool = False) -> dict[str, Outcome]:
    """The outcomes of the trials in `ids` whose latest attempt ended in the store."""
    if not ids or not store.files("trials"):
        return {}
    statuses = [s for s in ENDED if not (retry_failed and s == "failed")]
    rows = store.query("SELECT * FROM trials WHERE list_contains(?, trial_id) AND list_contains(?, status)",
                       [ids, statuses]).to_pylist()
    return {r["trial_id"]: Outcome.of_row(r) for r in rows}


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
    while not strategy.done():
        batch = strategy.propose()
        if batch:
            on_trials(batch)
            fresh = list({t.trial_id: t for t in batch if t.trial_id not in waiting}.values())
            known = stored_outcomes(store, [t.trial_id for t in fresh], retry_failed)
            scheduler.submit([t for t in fresh if t.trial_id not in known], attempts)
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
        for r in scheduler.wait_any():
            for t in waiting.pop(r.trial_id, []):
                strategy.observe(t, Outcome.of_result(r))
    return strategy.result()


def median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def strategy_for(sweep, candidates: list[TrialConfig], store_root) -> Strategy:
    """The strategy of the sweep's `search` (or `tune`): `candidates` are its grid's trials."""
    from paretolab.orchestrator import sweep as s

    if isinstance(sweep.search, s.FrontierSearch):
        from paretolab.orchestrator.frontier_search import FrontierSearch

        return FrontierSearch(sweep, candidates)
    if isinstance(sweep.search, s.OptunaSearch):
        return OptunaStrategy(sweep, store_root)
    from paretolab.orchestrator.tune import TuneStrategy

    return TuneStrategy(sweep, candidates)


def describe(sweep) -> str | None:
    """One line saying what the sweep's adaptive part will do (None for a plain grid)."""
    from paretolab.orchestrator import sweep as s

    parts = []
    if isinstance(sweep.search, s.FrontierSearch):
        f = sweep.search
        parts.append(f"frontier search of {f.axis} at p_success >= {f.target_success:g} per {', '.join(f.by) or 'sweep'}: "
                     f"probes of {f.seeds_per_probe} seeds (up to {f.max_seeds}) among the grid's trials")
    elif isinstance(sweep.search, s.OptunaSearch):
        o = sweep.search
        goals = ", ".join(f"{x.direction} {x.metric}" for x in o.objectives)
        parts.append(f"optuna search ({o.sampler}): {o.n_trials} points x {len(sweep.seeds)} seeds, {goals}"
                     + (f", {o.pruner} pruning" if o.pruner else ""))
    if sweep.tune is not None:
        t = sweep.tune
        parts.append(f"tuning {t.param} per cell over {len(t.values)} values on {t.seeds} seeds "
                     f"({'min' if t.direction == 'minimize' else 'max'} {t.metric}), then every seed")
    return "; ".join(parts) or None

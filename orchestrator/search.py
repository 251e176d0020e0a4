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
from pathlib import Path
from dataclasses import dataclass, field
from typing import ClassVar

from paretolab.store import Store
from paretolab.vocabulary.schema import COST_COLUMNS, RESULT_COLUMNS, STATUSES
from paretolab.vocabulary.trial import Pruning, TrialConfig, TrialResult

MEDIAN_STARTUP_TRIALS = 5  # Optuna's MedianPruner default n_startup_trials
HALVING_RATE = 4  # Optuna's SuccessiveHalvingPruner default reduction_factor


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
        metrics = {**r.final, **{k: getattr(r, k) for k in RESULT_COLUMNS}}
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

    # Whether `observe` records outcomes somewhere outside the store (Optuna's journal): the driver
    # then writes every arrived result to the store first, so that a driver killed between the two
    # never leaves a study that counts a trial the store does not hold.
    persists: ClassVar[bool] = False

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
    if not ids or not store.files("trials"):
        return {}
    statuses = [s for s in STATUSES if not (retry_failed and s == "failed")]
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
    from paretolab.vocabulary import sweep as s

    if isinstance(sweep.search, s.FrontierSearch):
        from paretolab.orchestrator.frontier_search import FrontierSearch

        return FrontierSearch(sweep, candidates)
    if isinstance(sweep.search, s.OptunaSearch):
        return OptunaStrategy(sweep, store_root)
    from paretolab.orchestrator.tune import TuneStrategy

    return TuneStrategy(sweep, candidates)


def describe(sweep) -> str | None:
    """One line saying what the sweep's adaptive part will do (None for a plain grid)."""
    from paretolab.vocabulary import sweep as s

    parts = []
    if isinstance(sweep.search, s.FrontierSearch):
        f = sweep.search
        parts.append(f"frontier search of {f.axis} at p_success >= {f.target_success:g} per {', '.join(f.by) or 'sweep'}: "
                     f"probes of {_n(f.seeds_per_probe, 'seed')} (up to {f.max_seeds}) among the grid's trials")
    elif isinstance(sweep.search, s.OptunaSearch):
        o = sweep.search
        goals = ", ".join(f"{x.direction} {x.metric}" for x in o.objectives)
        parts.append(f"optuna search ({o.sampler} sampler, seed {o.seed}): {_n(n_points(o), 'point')} x {_n(len(sweep.seeds), 'seed')}, "
                     f"{goals}" + (f", {o.pruner} pruning" if o.pruner else "")
                     + f"; space: {', '.join(_axis_text(a) for a in o.space)}")
    if sweep.tune is not None:
        t = sweep.tune
        parts.append(f"tuning {t.param} per cell over {len(t.values)} values on {_n(t.seeds, 'seed')} "
                     f"({'min' if t.direction == 'minimize' else 'max'} {t.metric}), then every seed")
    return "; ".join(parts) or None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def n_points(spec) -> int:
    """The number of points an Optuna search asks: `n_trials`, or fewer for a grid sampler over a smaller grid."""
    return min(spec.n_trials, _grid_size(spec)) if spec.sampler == "grid" else spec.n_trials


def _axis_text(a) -> str:
    if a.choices is not None:
        return f"{a.name} in [{', '.join(map(str, a.choices))}]"
    kind = ", ".join(k for k in ("int" if a.is_int else "", "log" if a.log else "", f"step {a.step:g}" if a.step else "") if k)
    return f"{a.name} {a.low:g}..{a.high:g}" + (f" ({kind})" if kind else "")


@dataclass(frozen=True)
class OptunaResult:
    """Optuna's answer: its best trial, or for several objectives its Pareto front (`best`), each
    with its parameters and objective values; and how many trials the study holds by state."""

    objectives: tuple[str, ...]
    best: tuple[dict, ...]
    states: dict[str, int]
    journal: str

    def title(self) -> str:
        kind = "Pareto front" if len(self.objectives) > 1 else "best trial"
        held = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items()))
        return f"optuna {kind} over {', '.join(self.objectives)} ({held}; study in {self.journal})"

    def rows(self) -> list[dict]:
        return list(self.best)


class OptunaStrategy(Strategy):
    """Optuna's ask-and-tell over the sweep's `search.space`. An Optuna trial is one cell: its point
    run with every seed of the sweep. Its value for an objective is what `paretolab cells` reports
    for that cell: a parameter's value; for a cost (`*_to_success`) the median over the seeds that
    succeeded, and FAIL when fewer than half succeeded (so Optuna's Pareto front is the one
    `paretolab frontier` draws at --success-prob 0.5); for another metric the median of its final
    value over the seeds (FAIL if none is finite). Trials that failed (raised) or were pruned do not
    count as seeds.

    The study lives in `<store>/_optuna/<sweep>.log` (Optuna's journal file storage). Asking keeps
    `n_workers` Optuna trials in flight (TPE with constant liar, so parallel asks spread out). Run
    again after a kill, the study is loaded: trials it left RUNNING are proposed again (the store
    answers the seeds that had ended) and told when they end, and only the remainder of `n_trials`
    is asked. Samplers are seeded with `seed` + the number of trials already in the study, so a
    resumed random search does not replay its first points.
    """

    persists: ClassVar[bool] = True

    def __init__(self, sweep, store_root):
        import optuna

        if store_root is None:
            from paretolab.vocabulary.errors import UsageError

            raise UsageError("an optuna search keeps its study in a local store folder; pass --store DIR")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep, self.spec = sweep, sweep.search
        folder = Path(store_root) / "_optuna"
        folder.mkdir(parents=True, exist_ok=True)
        self.journal = folder / f"{_safe(sweep.name)}.log"
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(self.journal)))
        try:
            existing = len(optuna.load_study(study_name=sweep.name, storage=storage).trials)
        except KeyError:
            existing = 0
        self.study = optuna.create_study(
            storage=storage, study_name=sweep.name, load_if_exists=True,
            sampler=self._sampler(self.spec.seed + existing),
            directions=[o.direction for o in self.spec.objectives])
        self.limit = n_points(self.spec)
        self.batch = 1
        self.cells: dict[int, list[TrialConfig]] = {}  # Optuna trial number -> its trials
        self.outcomes: dict[int, list[Outcome]] = {}
        self.resumed = [t for t in self.study.get_trials(deepcopy=False)
                        if t.state == optuna.trial.TrialState.RUNNING]
        self.ended: dict[str, str] = {}  # trial id -> status, of this search's trials

    def _sampler(self, seed: int):
        import optuna.samplers as s

        kind = self.spec.sampler
        if kind == "grid":
            return s.GridSampler({a.name: list(a.choices) for a in self.spec.space}, seed=seed)
        if kind == "random":
            return s.RandomSampler(seed=seed)
        if kind == "qmc":
            return s.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)
        if kind == "nsga2":
            return s.NSGAIISampler(seed=seed)
        return s.TPESampler(seed=seed, constant_liar=True)

    def start(self, n_workers: int) -> None:
        self.batch = max(1, n_workers)

    def propose(self) -> list[TrialConfig]:
        batch = []
        while self.resumed:
            ft = self.resumed.pop()
            if set(ft.params) != {a.name for a in self.spec.space}:  # killed between ask and sampling
                self.study.tell(ft.number, state=_state("FAIL"), skip_if_finished=True)
                continue
            batch.extend(self._cell(ft.number, ft.params))
        while len(self.cells) < self.batch and len(self.study.trials) < self.limit:
            trial = self.study.ask()
            params = {a.name: _suggest(trial, a) for a in self.spec.space}
            batch.extend(self._cell(trial.number, params, trial))
        return batch

    def _point(self, params: dict) -> list[TrialConfig]:
        """The trials of the point `params` (every seed); SpecError if the parameters are invalid together."""
        import dataclasses

        from paretolab.orchestrator.grid import expand

        return list(expand(dataclasses.replace(self.sweep, fixed=tuple(sorted({**dict(self.sweep.fixed), **params}.items())),
                                               search=None, points=None)))

    def _cell(self, number: int, params: dict, trial=None) -> list[TrialConfig]:
        from paretolab.vocabulary.errors import SpecError

        try:
            trials = self._point(params)
        except SpecError as e:  # parameters invalid together (e.g. k > n): this point fails, the search goes on
            if trial is not None:
                trial.set_user_attr("error", str(e))
            self.study.tell(number, state=_state("FAIL"), skip_if_finished=True)
            return []
        self.cells[number] = trials
        self.outcomes[number] = []
        return trials

    def observe(self, trial: TrialConfig, outcome: Outcome) -> None:
        for number, trials in self.cells.items():
            seen = {o.trial_id for o in self.outcomes[number]}  # two asks may be the same point
            if trial.trial_id not in seen and any(t.trial_id == trial.trial_id for t in trials):
                self.outcomes[number].append(outcome)
                self.ended[trial.trial_id] = outcome.status
                if len(self.outcomes[number]) == len(trials):
                    self._tell(number, trials[0], self.outcomes.pop(number))
                    del self.cells[number]
                return

    def _tell(self, number: int, config: TrialConfig, outcomes: list[Outcome]) -> None:
        values = [_objective(o.metric, config, outcomes) for o in self.spec.objectives]
        if all(o.status == "pruned" for o in outcomes):
            self.study.tell(number, state=_state("PRUNED"), skip_if_finished=True)
        elif any(v is None for v in values):
            self.study.tell(number, state=_state("FAIL"), skip_if_finished=True)
        else:
            self.study.tell(number, values, skip_if_finished=True)

    def done(self) -> bool:
        return not self.cells and not self.resumed and len(self.study.trials) >= self.limit

    def answered(self, store: Store) -> list[TrialConfig] | None:
        """A study that holds its `n_trials` points, every one told, whose trials the store all holds."""
        from paretolab.vocabulary.errors import SpecError

        if not self.done():
            return None
        used: dict[str, TrialConfig] = {}
        for ft in self.study.get_trials(deepcopy=False):
            try:
                used.update((t.trial_id, t) for t in self._point(ft.params))
            except SpecError:  # a point told FAIL before it ran (parameters invalid together, or never sampled)
                continue
        ids = list(used)
        return list(used.values()) if len(stored_outcomes(store, ids)) == len(ids) else None

    def pruning(self, store: Store) -> Pruning | None:
        """Thresholds per evaluation step of the sweep's success metric, from this search's ended
        trials' curves in the store: `median` (as Optuna's MedianPruner: after 5 completed trials, a
        trial worse than the median of the completed ones at the same step stops) or
        `successive_halving` (asynchronous: at rungs every x 4^k steps, a trial outside the best
        quarter of the trials that reached the rung stops)."""
        if self.spec.pruner is None:
            return None
        from paretolab.analysis.cells import ident

        s = self.sweep.success
        lower = s.op in ("<=", "<")
        if self.spec.pruner == "median":
            ids = [i for i, st in self.ended.items() if st in ("finished", "diverged")]
            if len(ids) < MEDIAN_STARTUP_TRIALS:
                return None
            stat, where = f"median({ident(s.metric)})", "true"
        else:
            ids = list(self.ended)
            rungs = []
            step, top = self._rung_base(store, ids)
            while step <= top:
                rungs.append(step)
                step *= HALVING_RATE
            q = 1 / HALVING_RATE if lower else 1 - 1 / HALVING_RATE
            stat, where = f"quantile_cont({ident(s.metric)}, {q!r})", f"list_contains({rungs!r}, step)"
        if not ids or not store.files("metrics"):
            return None
        rows = store.query(f"SELECT step, {stat} AS bar FROM metrics WHERE list_contains(?, trial_id) AND {where} "
                           f"AND isfinite({ident(s.metric)}) GROUP BY step ORDER BY step", [ids]).to_pylist()
        return Pruning(s.metric, tuple((r["step"], r["bar"]) for r in rows), lower) if rows else None

    def _rung_base(self, store: Store, ids: list[str]) -> tuple[int, int]:
        """The first rung and the last step: the evaluation interval and `max_steps` of built-in
        trials; for the researcher's code, which reports where it likes, the first step above 0 and
        the last step its ended trials reported (no rung before any has ended)."""
        if self.sweep.eval is not None:
            return self.sweep.eval.every, self.sweep.max_steps
        if not ids or not store.files("metrics"):
            return 1, 0
        row = store.query("SELECT min(step) FILTER (WHERE step > 0) AS lo, max(step) AS hi FROM metrics "
                          "WHERE list_contains(?, trial_id)", [ids]).to_pylist()[0]
        return (row["lo"], row["hi"]) if row["lo"] is not None else (1, 0)

    def result(self) -> OptunaResult:
        from collections import Counter

        trials = self.study.trials
        states = dict(Counter(t.state.name for t in trials))
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        best = self.study.best_trials if complete else []
        names = tuple(o.metric for o in self.spec.objectives)
        rows = tuple({"number": t.number, **t.params, **dict(zip(names, t.values))}
                     for t in sorted(best, key=lambda t: t.values))
        return OptunaResult(names, rows, states, str(self.journal))


def _objective(metric: str, config: TrialConfig, outcomes: list[Outcome]) -> float | None:
    columns = config.columns()
    if metric in columns:
        v = columns[metric]
        return float(v) if finite(v) else None
    counted = [o for o in outcomes if o.counts]
    if metric in COST_COLUMNS:
        costs = [o.metrics.get(metric) for o in counted if o.success]
        if not counted or 2 * len(costs) < len(counted):
            return None
        return median([float(c) for c in costs if finite(c)])
    return median([float(o.metrics[metric]) for o in counted if finite(o.metrics.get(metric))])


def _suggest(trial, axis):
    if axis.choices is not None:
        return trial.suggest_categorical(axis.name, list(axis.choices))
    if axis.is_int:
        return trial.suggest_int(axis.name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(axis.name, axis.low, axis.high, step=axis.step, log=axis.log)


def _state(name: str):
    import optuna

    return optuna.trial.TrialState[name]


def _grid_size(spec) -> int:
    n = 1
    for a in spec.space:
        n *= len(a.choices)
    return n


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

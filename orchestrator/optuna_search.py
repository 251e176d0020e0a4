"""Optuna search: Optuna's ask-and-tell over the sweep's `search.space`, one Optuna trial per cell."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from paretolab.orchestrator.grid import expand
from paretolab.orchestrator.strategy import (Outcome, Strategy, cell_score, fixed_at, plural, score_name,
                                             stored_outcomes)
from paretolab.store import Store
from paretolab.vocabulary.errors import SpecError, UsageError
from paretolab.vocabulary.sweep import OptunaSearchSpec, SpaceAxis, Sweep
from paretolab.vocabulary.trial import Pruning, TrialConfig

MEDIAN_STARTUP_TRIALS = 5  # Optuna's MedianPruner default n_startup_trials
HALVING_RATE = 4  # Optuna's SuccessiveHalvingPruner default reduction_factor


@dataclass(frozen=True)
class OptunaSearchResult:
    """Optuna's answer: its best trial, or for several objectives its Pareto front (`best`), each
    with its parameters and objective values (`strategy.score_name`: `median_test_error`, the median
    over the cell's seeds); and how many trials the study holds by state."""

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


class OptunaSearchStrategy(Strategy):
    """Optuna's ask-and-tell over the sweep's `search.space`. An Optuna trial is one cell: its point
    run with every seed of the sweep. Its value for an objective is what `paretolab cells` reports
    for that cell (`strategy.cell_score`): a parameter's value; for a cost (`*_to_success`) the
    median over the seeds that succeeded, and FAIL when fewer than half succeeded (so Optuna's
    Pareto front is the one `paretolab frontier` draws at --success-prob 0.5); for another metric
    the median of its final value (`final_<metric>` in `trials`) over the seeds (FAIL if none is
    finite). Trials that failed (raised) or were pruned do not count as seeds.

    The study lives in `<store>/_optuna/<sweep>.log` (Optuna's journal file storage). Asking keeps
    `n_workers` Optuna trials in flight (TPE with constant liar, so parallel asks spread out). Run
    again after a kill, the study is loaded: trials it left RUNNING are proposed again (the store
    answers the seeds that had ended) and told when they end, and only the remainder of `n_trials`
    is asked. Samplers are seeded with `seed` + the number of trials already in the study, so a
    resumed random search does not replay its first points.
    """

    persists: ClassVar[bool] = True

    def __init__(self, sweep: Sweep, candidates: list[TrialConfig], store_root: Path | None = None):
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        if store_root is None:
            raise UsageError("an optuna search keeps its study in a local store folder; pass --store DIR")
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.sweep, self.spec = sweep, sweep.search
        folder = Path(store_root) / "_optuna"
        folder.mkdir(parents=True, exist_ok=True)
        self.journal = folder / f"{_safe(sweep.name)}.log"
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

    @classmethod
    def asked_as_it_goes(cls, sweep: Sweep) -> int:
        return n_points(sweep.search) * len(sweep.seeds)

    @classmethod
    def describe(cls, sweep: Sweep) -> str:
        o = sweep.search
        goals = ", ".join(f"{x.direction} {x.metric}" for x in o.objectives)
        return (f"optuna search ({o.sampler} sampler, seed {o.seed}): {plural(n_points(o), 'point')} x "
                f"{plural(len(sweep.seeds), 'seed')}, {goals}" + (f", {o.pruner} pruning" if o.pruner else "")
                + f"; space: {', '.join(_axis_text(a) for a in o.space)}")

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
        return list(expand(dataclasses.replace(fixed_at(self.sweep, params), points=None)))

    def _cell(self, number: int, params: dict, trial=None) -> list[TrialConfig]:
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
        values = [cell_score(o.metric, config, outcomes) for o in self.spec.objectives]
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
        s = self.sweep.success
        lower = s.op in ("<=", "<")
        if self.spec.pruner == "median":
            ids = [i for i, st in self.ended.items() if st in ("finished", "diverged")]
            if len(ids) < MEDIAN_STARTUP_TRIALS:
                return None
            bars = store.step_quantiles(ids, s.metric, 0.5)
        else:
            ids = list(self.ended)
            rungs = []
            step, top = self._rung_base(store, ids)
            while step <= top:
                rungs.append(step)
                step *= HALVING_RATE
            q = 1 / HALVING_RATE if lower else 1 - 1 / HALVING_RATE
            bars = store.step_quantiles(ids, s.metric, q, steps=rungs)
        return Pruning(s.metric, tuple(bars), lower) if bars else None

    def _rung_base(self, store: Store, ids: list[str]) -> tuple[int, int]:
        """The first rung and the last step: the evaluation interval and `max_steps` of built-in
        trials; for the researcher's code, which reports where it likes, the first step above 0 and
        the last step its ended trials reported (no rung before any has ended)."""
        if self.sweep.eval is not None:
            return self.sweep.eval.every, self.sweep.max_steps
        return store.step_span(ids) or (1, 0)

    def result(self) -> OptunaSearchResult:
        trials = self.study.trials
        states = dict(Counter(t.state.name for t in trials))
        complete = [t for t in trials if t.state.name == "COMPLETE"]
        best = self.study.best_trials if complete else []
        names = tuple(o.metric for o in self.spec.objectives)
        scores = [score_name(name, self.sweep) for name in names]  # a cost's value is its median over the seeds
        rows = tuple({"number": t.number, **t.params, **dict(zip(scores, t.values))}
                     for t in sorted(best, key=lambda t: t.values))
        return OptunaSearchResult(names, rows, states, str(self.journal))


def n_points(spec: OptunaSearchSpec) -> int:
    """The number of points an Optuna search asks: `n_trials`, or fewer for a grid sampler over a smaller grid."""
    return min(spec.n_trials, _grid_size(spec)) if spec.sampler == "grid" else spec.n_trials


def _axis_text(a: SpaceAxis) -> str:
    if a.choices is not None:
        return f"{a.name} in [{', '.join(map(str, a.choices))}]"
    kind = ", ".join(k for k in ("int" if a.is_int else "", "log" if a.log else "", f"step {a.step:g}" if a.step else "") if k)
    return f"{a.name} {a.low:g}..{a.high:g}" + (f" ({kind})" if kind else "")


def _suggest(trial, axis: SpaceAxis):
    if axis.choices is not None:
        return trial.suggest_categorical(axis.name, list(axis.choices))
    if axis.is_int:
        return trial.suggest_int(axis.name, int(axis.low), int(axis.high), step=int(axis.step or 1), log=axis.log)
    return trial.suggest_float(axis.name, axis.low, axis.high, step=axis.step, log=axis.log)


def _state(name: str):
    import optuna

    return optuna.trial.TrialState[name]


def _grid_size(spec: OptunaSearchSpec) -> int:
    n = 1
    for a in spec.space:
        n *= len(a.choices)
    return n


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)

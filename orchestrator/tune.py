"""Per-cell tuning: pick a hyperparameter per grid cell on a few seeds, then spend the full seed budget.

The papers tune once and freeze: e.g. the learning rate of each (width, train_size) cell is chosen
on a couple of seeds, and only then are 50 seeds run at that rate. With
`tune: {param: lr, values: [...], select: min steps_to_success, seeds: 2}` the first phase runs
every value on the first `seeds` seeds of every cell; as soon as a cell's first phase has ended,
its value is chosen and its full seed budget runs at that value (cells move independently, so the
workers stay busy). The chosen value's first-phase trials are trials of the second phase too (same
ids): they are not run twice.

A value's score is the cell statistic of `paretolab cells`: for a cost (`*_to_success`) the median
over the seeds that succeeded, with no score when fewer than half succeeded; for another metric the
median of its final value (`final_<metric>` in `trials`). The best score wins; values without a
score rank last (ties: more successes, then the order of `values`). The answer's rows name the
chosen value's score by its statistic (`median_steps_to_success`).

Recorded in the store: the sweep's row lists the second-phase trials only (so its cells are the
grid's cells, each at its chosen value); a second sweep, `<sweep>.tune`, lists the first phase with
`param` as an axis, so `paretolab cells --sweep <sweep>.tune` shows every value's score per cell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from paretolab.orchestrator.grid import axes, expand
from paretolab.orchestrator.strategy import Outcome, Strategy, cell_score, fixed_at, plural, score_name
from paretolab.vocabulary.sweep import Sweep, Value
from paretolab.vocabulary.trial import TrialConfig


@dataclass
class _Cell:
    key: tuple[Value, ...]
    trials: dict[Value, list[TrialConfig]]  # tuned value -> the cell's trials at it, in seed order
    outcomes: dict[str, Outcome]
    chosen: Value = None
    scores: dict | None = None
    final: list[TrialConfig] | None = None


@dataclass(frozen=True)
class TuneResult:
    sweep: str
    param: str
    metric: str
    rows_: tuple[dict, ...]

    def title(self) -> str:
        return f"{self.param} chosen per cell by {self.metric} (every value's score: paretolab cells --sweep {self.sweep}.tune)"

    def rows(self) -> list[dict]:
        return list(self.rows_)


class TuneStrategy(Strategy):
    def __init__(self, sweep: Sweep, candidates: list[TrialConfig], store_root: Path | None = None):
        self.sweep, self.tune = sweep, sweep.tune
        self.axes = axes(sweep)
        self.cells: dict[tuple, _Cell] = {}
        for value in self.tune.values:
            for t in expand(fixed_at(sweep, {self.tune.param: value})):
                key = tuple(t.columns()[a] for a in self.axes)
                cell = self.cells.setdefault(key, _Cell(key, {}, {}))
                cell.trials.setdefault(value, []).append(t)
        self.first = {key: [t for ts in c.trials.values() for t in ts[:self.tune.seeds]] for key, c in self.cells.items()}
        self.queued: list[TrialConfig] = [t for ts in self.first.values() for t in ts]
        self.waiting = sum(len(ts) for ts in self.first.values())

    @classmethod
    def describe(cls, sweep: Sweep) -> str:
        t = sweep.tune
        return (f"tuning {t.param} per cell over {len(t.values)} values on {plural(t.seeds, 'seed')} "
                f"({'min' if t.direction == 'minimize' else 'max'} {t.metric}), then every seed")

    def propose(self) -> list[TrialConfig]:
        batch, self.queued = self.queued, []
        return batch

    def observe(self, trial: TrialConfig, outcome: Outcome) -> None:
        key = tuple(trial.columns()[a] for a in self.axes)
        cell = self.cells[key]
        cell.outcomes[trial.trial_id] = outcome
        self.waiting -= 1
        if cell.final is None and all(t.trial_id in cell.outcomes for t in self.first[key]):
            self._choose(cell)
            cell.final = cell.trials[cell.chosen]
            self.queued.extend(cell.final)
            self.waiting += len(cell.final)

    def _choose(self, cell: _Cell) -> None:
        sign = 1 if self.tune.direction == "minimize" else -1
        ranked = []
        cell.scores = {}
        for i, (value, trials) in enumerate(cell.trials.items()):
            outcomes = [cell.outcomes[t.trial_id] for t in trials[:self.tune.seeds]]
            score = cell_score(self.tune.metric, trials[0], outcomes)
            cell.scores[value] = score
            wins = sum(o.counts and o.success for o in outcomes)
            ranked.append((score is None, sign * score if score is not None else 0, -wins, i, value))
        cell.chosen = min(ranked)[-1]

    def done(self) -> bool:
        return self.waiting == 0 and not self.queued

    def result(self) -> TuneResult:
        rows = []
        for cell in self.cells.values():
            row = dict(zip(self.axes, cell.key))
            row[self.tune.param] = cell.chosen
            row[score_name(self.tune.metric, self.sweep)] = (cell.scores or {}).get(cell.chosen)
            row["scores"] = ", ".join(f"{v}: {'-' if s is None else f'{s:g}'}" for v, s in (cell.scores or {}).items())
            rows.append(row)
        return TuneResult(self.sweep.name, self.tune.param, self.tune.metric, tuple(rows))

    def records(self, sweep: Sweep, used: list[TrialConfig]) -> list[tuple[Sweep, list[TrialConfig]]]:
        """The sweep lists the second phase; `<sweep>.tune` the first, with the tuned parameter as an axis."""
        final = {t.trial_id for c in self.cells.values() for t in c.final or ()}
        first = {t.trial_id for ts in self.first.values() for t in ts}
        tuned = dataclasses.replace(self.sweep, name=f"{self.sweep.name}.tune",
                                    grid=self.sweep.grid + ((self.tune.param, self.tune.values),))
        return [(self.sweep, [t for t in used if t.trial_id in final]),
                (tuned, [t for t in used if t.trial_id in first])]


"""Frontier search: the phase boundary along one grid axis, by bisection instead of the full grid.

For each combination of the `by` axes, the boundary is the smallest value of `axis` whose success
probability reaches `target_success` (success is assumed to grow along the axis, as it does with
data, width or steps). A full grid measures every value of the axis with every seed, yet all but
the one or two values around the boundary come out at p = 0 or p = 1. Bisection probes
`log2(values)` of them instead, each with `seeds_per_probe` seeds, adding seeds (up to
`max_seeds`) only where the 95% Wilson interval of a probe straddles the target. Every seed of a
probe is the same trial as in the full grid (same id), so the store serves both, and a search that
was killed replays its probes from the store.

The boundary's confidence interval: under the monotonicity assumption, a probe whose Wilson
interval lies wholly below the target places the boundary above its value, and one wholly at or
above the target places it at or below. `ci_low` is the largest probed value confidently below,
`ci_high` the smallest confidently above (None where no probe is). A probe decided by its point
estimate alone (interval straddling the target with all `max_seeds` used) bounds nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from paretolab.orchestrator.strategy import Outcome, Strategy, plural
from paretolab.vocabulary.stats import wilson
from paretolab.vocabulary.sweep import Sweep, Value
from paretolab.vocabulary.trial import TrialConfig


@dataclass
class Probe:
    """The seeds run so far at one axis value of one combination."""

    index: int
    asked: int = 0  # seeds proposed
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def n(self) -> int:
        return sum(o.counts for o in self.outcomes)

    @property
    def successes(self) -> int:
        return sum(o.counts and o.success for o in self.outcomes)


@dataclass
class Combination:
    """The bisection along the axis for one combination of the `by` axes.

    `lo` is the largest index known below the target (-1: none), `hi` the smallest known at or above
    it (len(values): none); the boundary is found when they are adjacent."""

    key: tuple[Value, ...]
    cells: list[list[TrialConfig]]  # per axis value (ascending), its trials in seed order
    lo: int = -1
    hi: int = 0
    probes: dict[int, Probe] = field(default_factory=dict)
    current: Probe | None = None

    def __post_init__(self):
        self.hi = len(self.cells)

    @property
    def done(self) -> bool:
        return self.hi - self.lo <= 1


@dataclass(frozen=True)
class Boundary:
    """The answer for one combination. `status`: `crossed` (values below and above were probed),
    `always` (the smallest value already reaches the target) or `never` (not even the largest)."""

    by: dict[str, Value]
    status: str
    boundary: Value
    below: Value
    p_below: float | None
    n_below: int
    above: Value
    p_above: float | None
    n_above: int
    ci_low: Value
    ci_high: Value
    probes: int
    trials: int


@dataclass(frozen=True)
class FrontierSearchResult:
    axis: str
    target_success: float
    boundaries: tuple[Boundary, ...]
    trials: int  # distinct trials the search used (run now or taken from the store)

    def title(self) -> str:
        return (f"frontier of {self.axis} at p_success >= {self.target_success:g} per {', '.join(self.boundaries[0].by) or 'sweep'}"
                f" ({self.trials} trials; ci_low/ci_high: 95% Wilson bounds)" if self.boundaries else "no combination")

    def rows(self) -> list[dict]:
        out = []
        for b in self.boundaries:
            row = dict(b.by)
            row.update({k: getattr(b, k) for k in ("status", "boundary", "below", "p_below", "n_below", "above",
                                                   "p_above", "n_above", "ci_low", "ci_high", "probes", "trials")})
            out.append(row)
        return out


class FrontierSearchStrategy(Strategy):
    """Bisection per `by` combination, all combinations in flight at once (one probe each), so the
    workers hold every combination's current probe together."""

    def __init__(self, sweep: Sweep, candidates: list[TrialConfig], store_root: Path | None = None):
        spec = sweep.search
        self.spec = spec
        seed_rank = {s: i for i, s in enumerate(sweep.seeds)}
        groups: dict[tuple, dict[Value, list[TrialConfig]]] = {}
        for t in candidates:
            cols = t.columns()
            key = tuple(cols[b] for b in spec.by)
            groups.setdefault(key, {}).setdefault(cols[spec.axis], []).append(t)
        self.combos = []
        for key, by_value in groups.items():
            values = sorted(by_value, key=_order)
            cells = [sorted(by_value[v], key=lambda t: seed_rank.get(t.seed, len(seed_rank))) for v in values]
            self.combos.append(Combination(key, cells))
        self.values = {c.key: sorted(groups[c.key], key=_order) for c in self.combos}
        self.used: set[str] = set()

    @classmethod
    def describe(cls, sweep: Sweep) -> str:
        f = sweep.search
        return (f"frontier search of {f.axis} at p_success >= {f.target_success:g} per {', '.join(f.by) or 'sweep'}: "
                f"probes of {plural(f.seeds_per_probe, 'seed')} (up to {f.max_seeds}) among the grid's trials")

    def propose(self) -> list[TrialConfig]:
        batch = []
        for c in self.combos:
            if c.done or (c.current is not None and len(c.current.outcomes) < c.current.asked):
                continue
            if c.current is None:
                i = self._next_index(c)
                c.current = c.probes[i] = Probe(i)
            cell = c.cells[c.current.index]
            want = min(len(cell), self.spec.max_seeds,
                       c.current.asked + self.spec.seeds_per_probe if c.current.asked else self.spec.seeds_per_probe)
            batch.extend(cell[c.current.asked:want])
            c.current.asked = want
        self.used.update(t.trial_id for t in batch)
        return batch

    def observe(self, trial: TrialConfig, outcome: Outcome) -> None:
        for c in self.combos:
            p = c.current
            if p is not None and any(t.trial_id == trial.trial_id for t in c.cells[p.index][:p.asked]):
                p.outcomes.append(outcome)
                if len(p.outcomes) == p.asked:
                    self._decide(c, p)
                return

    def _decide(self, c: Combination, p: Probe) -> None:
        verdict = self._verdict(p, len(c.cells[p.index]))
        if verdict is None:  # uncertain: the next `propose` adds seeds to this probe
            return
        if verdict:
            c.hi = p.index
        else:
            c.lo = p.index
        c.current = None

    def _verdict(self, p: Probe, available: int) -> bool | None:
        """True: at or above the target; False: below; None: add seeds."""
        target = self.spec.target_success
        if p.n == 0:  # every seed failed (raised) or was pruned: no evidence of success
            return False
        lo, hi = wilson(p.successes, p.n)
        if lo >= target or hi < target:
            return lo >= target
        if p.asked < min(self.spec.max_seeds, available):
            return None
        return p.successes / p.n >= target

    def _next_index(self, c: Combination) -> int:
        """The candidate strictly between `lo` and `hi` nearest their midpoint in log space (in
        index space where a value is not positive, e.g. null = online)."""
        values = self.values[c.key]
        a, b = max(c.lo, 0), min(c.hi, len(values) - 1)
        inside = range(c.lo + 1, c.hi)
        if all(_positive(values[i]) for i in (a, b)):
            mid = (math.log(values[a]) + math.log(values[b])) / 2
            scored = [(abs(math.log(values[i]) - mid), i) if _positive(values[i]) else (math.inf, i) for i in inside]
            return min(scored)[1]
        return (c.lo + c.hi) // 2

    def done(self) -> bool:
        return all(c.done for c in self.combos)

    def result(self) -> FrontierSearchResult:
        return FrontierSearchResult(self.spec.axis, self.spec.target_success,
                                    tuple(self._boundary(c) for c in self.combos), len(self.used))

    def _boundary(self, c: Combination) -> Boundary:
        values, target = self.values[c.key], self.spec.target_success
        status = "never" if c.hi == len(values) else "always" if c.lo == -1 else "crossed"
        below, above = c.probes.get(c.lo), c.probes.get(c.hi)
        sure_below = [i for i, p in c.probes.items() if p.n and wilson(p.successes, p.n)[1] < target]
        sure_above = [i for i, p in c.probes.items() if p.n and wilson(p.successes, p.n)[0] >= target]
        return Boundary(
            by=dict(zip(self.spec.by, c.key)), status=status,
            boundary=values[c.hi] if c.hi < len(values) else None,
            below=values[c.lo] if c.lo >= 0 else None, p_below=_p(below), n_below=below.n if below else 0,
            above=values[c.hi] if c.hi < len(values) else None, p_above=_p(above), n_above=above.n if above else 0,
            ci_low=values[max(sure_below)] if sure_below else None,
            ci_high=values[min(sure_above)] if sure_above else None,
            probes=len(c.probes), trials=sum(p.asked for p in c.probes.values()),
        )


def _p(probe: Probe | None) -> float | None:
    return probe.successes / probe.n if probe and probe.n else None


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _order(v):
    # null (online, unlimited data) is the largest value of a data axis; otherwise natural order
    return (v is None, v if v is not None else 0)

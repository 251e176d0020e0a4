"""The adaptive modes, chosen by the type of the sweep's spec: one table, spec type -> strategy.

A spec type `<Mode>Spec` (`paretolab.vocabulary.sweep`) is run by `<Mode>Strategy`, defined in the
module of its mode (`frontier_search.py`, `optuna_search.py`, `tune.py`); the contract they
implement and the loop that drives them are in `strategy.py`, which imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from paretolab.orchestrator.frontier_search import FrontierSearchStrategy
from paretolab.orchestrator.optuna_search import OptunaSearchStrategy
from paretolab.orchestrator.strategy import Strategy
from paretolab.orchestrator.tune import TuneStrategy
from paretolab.vocabulary.errors import SpecError
from paretolab.vocabulary.sweep import FrontierSearchSpec, OptunaSearchSpec, Sweep, TuneSpec
from paretolab.vocabulary.trial import TrialConfig

STRATEGIES: dict[type, type[Strategy]] = {
    FrontierSearchSpec: FrontierSearchStrategy,
    OptunaSearchSpec: OptunaSearchStrategy,
    TuneSpec: TuneStrategy,
}


def strategy_for(sweep: Sweep, candidates: list[TrialConfig], store_root: Path | None) -> Strategy:
    """The strategy of the sweep's `search` (or else its `tune`) spec; `candidates` are its grid's trials.

    Raises:
        SpecError: the sweep has neither, or one of a type that no strategy runs (a `Sweep` built
            by hand; the spec parser builds only the types of `STRATEGIES`).
    """
    spec = sweep.search if sweep.search is not None else sweep.tune
    return _strategy_of(sweep, spec)(sweep, candidates, store_root)


def describe(sweep: Sweep) -> str | None:
    """One line saying what the sweep's adaptive part will do (None for a plain grid)."""
    parts = [_strategy_of(sweep, spec).describe(sweep) for spec in (sweep.search, sweep.tune) if spec is not None]
    return "; ".join(parts) or None


def asked_as_it_goes(sweep: Sweep) -> int | None:
    """The trials the sweep's search will ask as it runs, if it lists none ahead (`Strategy.asked_as_it_goes`)."""
    asked = [_strategy_of(sweep, spec).asked_as_it_goes(sweep) for spec in (sweep.search, sweep.tune) if spec is not None]
    return next((n for n in asked if n is not None), None)


def _strategy_of(sweep: Sweep, spec: object) -> type[Strategy]:
    kind = STRATEGIES.get(type(spec))
    if kind is None:
        raise SpecError(f"{sweep.path}: search: no strategy runs a {type(spec).__name__}; known: "
                        f"{', '.join(t.__name__ for t in STRATEGIES)}")
    return kind

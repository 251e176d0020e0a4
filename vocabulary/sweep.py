"""The parsed sweep: what the orchestrator expands into trials. Built by `paretolab.spec`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import Code, EvalArgs

Value = object  # a validated parameter value: int, float, str, bool or None


@dataclass(frozen=True)
class Resources:
    """What one worker slot takes from Ray: CPU cores and a (fraction of a) GPU; and how many
    trials of one shape a worker trains together (`pack_size`; None = auto, from the model size)."""

    cpu: float = 1.0
    gpu: float = 0.0
    pack_size: int | None = None


@dataclass(frozen=True)
class FrontierSearchSpec:
    """Find, per combination of the `by` axes, the smallest value of the grid axis `axis` whose
    success probability reaches `target_success`, by bisection over the axis's grid values (in log
    space), each probe `seeds_per_probe` seeds, more (up to `max_seeds`) where the Wilson interval
    straddles the target. Success probability is assumed to grow along `axis`."""

    axis: str
    by: tuple[str, ...]
    target_success: float = 0.5
    seeds_per_probe: int = 8
    max_seeds: int = 8


@dataclass(frozen=True)
class SpaceAxis:
    """One dimension of an Optuna search: `choices` (categorical), or a range `low`..`high` of the
    parameter's type (int or float), on a log scale if `log`, in multiples of `step` if given."""

    name: str
    choices: tuple[Value, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False


@dataclass(frozen=True)
class Objective:
    """A value to minimize or maximize: a trial metric (`flops_to_success`, `test_error`, ...) or a
    parameter of the point (`train_size`)."""

    metric: str
    direction: Literal["minimize", "maximize"] = "minimize"


@dataclass(frozen=True)
class OptunaSearchSpec:
    """An Optuna study driven by ask-and-tell: `n_trials` points of `space` (each run with every seed
    of the sweep), chosen by `sampler`, scored by `objectives`, with an optional `pruner`."""

    sampler: Literal["tpe", "random", "qmc", "grid", "nsga2"]
    n_trials: int
    space: tuple[SpaceAxis, ...]
    objectives: tuple[Objective, ...]
    pruner: Literal["median", "successive_halving"] | None = None
    seed: int = 0


@dataclass(frozen=True)
class TuneSpec:
    """Per-cell tuning: every value of `param` runs on the first `seeds` seeds of each cell; the
    value with the best median `metric` (`direction`) is used for the cell's full seed budget."""

    param: str
    values: tuple[Value, ...]
    metric: str = "steps_to_success"
    direction: Literal["minimize", "maximize"] = "minimize"
    seeds: int = 2


@dataclass(frozen=True)
class Sweep:
    """A validated sweep.

    `fixed` holds every parameter that does not vary; `grid` axes form a cartesian product; each
    group of `zips` moves together (one value of each axis per step) and is crossed with the grid;
    `points`, from a Python spec, replaces grid and zips with explicit parameter sets. Every point is
    crossed with `seeds` unless it names its own `seed`. `task` and `model` are None when they are
    axes (`grid: {model: [lstm, transformer]}`): each point then names its own, and a parameter
    applies to the points whose task and model have it.
    """

    name: str
    task: str | None  # None (and model, eval None) for a sweep of the researcher's own code
    model: str | None
    fixed: tuple[tuple[str, Value], ...]
    grid: tuple[tuple[str, tuple[Value, ...]], ...]
    zips: tuple[tuple[tuple[str, tuple[Value, ...]], ...], ...]
    points: tuple[tuple[tuple[str, Value], ...], ...] | None
    seeds: tuple[int, ...]
    max_steps: int | None
    eval: EvalArgs | None
    success: Success
    resources: Resources
    max_attempts: int
    path: str
    source: str
    search: FrontierSearchSpec | OptunaSearchSpec | None = None  # None: run the whole grid
    tune: TuneSpec | None = None
    code: Code | None = None  # the researcher's own function or command (`paretolab.user_code`)
    # with `trainable` as an axis: each of its values and its `Code` (`code` is the first's)
    codes: tuple[tuple[str, Code], ...] = ()
    # arguments of one value of the task or model axis: (axis, value, ((parameter, value), ...)),
    # from `model_args: {lstm: {...}, transformer: {...}}`
    per_value: tuple[tuple[str, str, tuple[tuple[str, Value], ...]], ...] = ()

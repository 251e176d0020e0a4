"""The parsed sweep: what the orchestrator expands into trials. Built by `paretolab.spec`."""

from __future__ import annotations

from dataclasses import dataclass

from paretolab.tasks.success import Success
from paretolab.workers.trial import EvalArgs

Value = object  # a validated parameter value: int, float, str, bool or None


@dataclass(frozen=True)
class Resources:
    """What one worker slot takes from Ray: CPU cores and a (fraction of a) GPU; and how many
    trials of one shape a worker trains together (`pack_size`; None = auto, from the model size)."""

    cpu: float = 1.0
    gpu: float = 0.0
    pack_size: int | None = None


@dataclass(frozen=True)
class Sweep:
    """A validated sweep.

    `fixed` holds every parameter that does not vary; `grid` axes form a cartesian product; each
    group of `zips` moves together (one value of each axis per step) and is crossed with the grid;
    `points`, from a Python spec, replaces grid and zips with explicit parameter sets. Every point is
    crossed with `seeds` unless it names its own `seed`.
    """

    name: str
    task: str
    model: str
    fixed: tuple[tuple[str, Value], ...]
    grid: tuple[tuple[str, tuple[Value, ...]], ...]
    zips: tuple[tuple[tuple[str, tuple[Value, ...]], ...], ...]
    points: tuple[tuple[tuple[str, Value], ...], ...] | None
    seeds: tuple[int, ...]
    max_steps: int
    eval: EvalArgs
    success: Success
    resources: Resources
    max_attempts: int
    path: str
    source: str

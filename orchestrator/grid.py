"""Grid expansion: a `Sweep` becomes the list of `TrialConfig`s it names, each with its id."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator

from paretolab.errors import SHOWN_CHARS, SpecError, clipped, shown
from paretolab.orchestrator.identity import point_content, seeded_id
from paretolab.orchestrator.sweep import Sweep, Value
from paretolab.tasks.registry import tasks
from paretolab.workers.models import models
from paretolab.workers.trial import TrainArgs, TrialConfig


# Columns of the `trials` and `metrics` tables that no parameter may shadow once flattened.
RESERVED = frozenset({
    "trial_id", "attempt", "status", "task", "model", "seed", "max_steps", "steps", "samples", "wall_s",
    "success", "steps_to_success", "samples_to_success", "flops_to_success", "n_params", "flops_per_sample",
    "error", "node",
    "finished_at", "config", "step", "train_loss", "train_error",
    # and the statistics the analysis adds beside the axes (cells, luck)
    "n_seeds", "successes", "p_success", "p_lo", "p_hi", "k_seeds", "p_any_success", "expected_cost",
    "expected_total_cost", "seeds_for_target", "on_frontier",
})


def parameters(task: str, model: str) -> dict[str, str]:
    """Every parameter a sweep of `task` and `model` can set, mapped to its owner: task, model or train.

    Raises:
        SpecError: two owners declare the same name, or a name shadows a result column.
    """
    owners: dict[str, str] = {}
    for owner, cls in (("task", tasks()[task].Args), ("model", models()[model].Args), ("train", TrainArgs)):
        for f in dataclasses.fields(cls):
            if f.name in owners or f.name in RESERVED or f.name in tasks()[task].metrics:
                raise SpecError(f"{owner} {task if owner == 'task' else model!r} declares the parameter "
                                f"{f.name!r}, which is already a {owners.get(f.name, 'result')} column; rename it")
            owners[f.name] = owner
    return owners


def points(sweep: Sweep) -> Iterator[dict[str, Value]]:
    """The parameter sets of the sweep, before seeds: fixed values overlaid with each grid/zip step."""
    base = dict(sweep.fixed)
    if sweep.points is not None:
        for p in sweep.points:
            yield {**base, **dict(p)}
        return
    names = [name for name, _ in sweep.grid]
    zip_steps = [list(zip(*(values for _, values in group))) for group in sweep.zips]
    for combo in itertools.product(*(values for _, values in sweep.grid), *zip_steps):
        point = dict(base)
        point.update(zip(names, combo[: len(names)]))
        for group, step in zip(sweep.zips, combo[len(names):]):
            point.update((name, v) for (name, _), v in zip(group, step))
        yield point


def axes(sweep: Sweep) -> list[str]:
    """The parameters that vary across the sweep's points (the seed excluded): its grid and zip
    axes, or for a Python spec the parameters whose value differs between points."""
    if sweep.points is None:  # an optuna search's space axes vary like grid axes
        return [name for name, _ in sweep.grid] + [name for group in sweep.zips for name, _ in group] + \
            [a.name for a in getattr(sweep.search, "space", ())]
    values: dict[str, set] = {}
    for p in sweep.points:
        for k, v in p:
            values.setdefault(k, set()).add(v)
    return sorted(k for k, vs in values.items() if k != "seed" and (len(vs) > 1 or any(k not in dict(p) for p in sweep.points)))


def count(sweep: Sweep) -> int:
    """The number of trials without expanding them (more than `expand` yields if zip groups or
    Python points repeat a parameter set)."""
    if sweep.points is not None:
        return sum(1 if any(k == "seed" for k, _ in p) else len(sweep.seeds) for p in sweep.points)
    n = len(sweep.seeds)
    for _, values in sweep.grid:
        n *= len(values)
    for group in sweep.zips:
        n *= len(group[0][1])
    return n


def expand(sweep: Sweep) -> Iterator[TrialConfig]:
    """Every trial of the sweep, in grid order, seeds innermost; duplicates are dropped.

    Raises:
        SpecError: a point whose parameters are invalid together (e.g. k > n), naming the point.
    """
    owners = parameters(sweep.task, sweep.model)
    task_cls, model_cls = tasks()[sweep.task], models()[sweep.model]
    seen: set[str] = set()
    for point in points(sweep):
        seeds = (point.pop("seed"),) if "seed" in point else sweep.seeds
        parts: dict[str, dict[str, Value]] = {"task": {}, "model": {}, "train": {}}
        for name, value in point.items():
            parts[owners[name]][name] = value
        parts["train"].setdefault("loss", task_cls.losses[0])  # each task's first loss is its default
        try:
            task_args = task_cls.Args(**parts["task"])
            task_args.check()
            model_args = model_cls.Args(**parts["model"])
            io = task_cls.io(task_args)
            if io.kind not in model_cls.accepts:
                raise ValueError(f"model {sweep.model!r} takes {' or '.join(model_cls.accepts)} inputs, "
                                 f"task {sweep.task!r} gives {io.kind} inputs")
            model_args.check(io)
            train = TrainArgs(**parts["train"])
            train.check()
            if train.loss not in task_cls.losses:
                raise ValueError(f"loss {shown(train.loss)} is not one of {', '.join(task_cls.losses)}")
        except ValueError as e:
            values = ", ".join(f"{k}={shown(v)}" for k, v in sorted(point.items()))
            raise SpecError(f"{sweep.path}: point {{{values}}}: {clipped(str(e), 2 * SHOWN_CHARS)}") from None
        content = point_content(sweep.task, task_args, sweep.model, model_args, train, sweep.max_steps,
                                sweep.eval, sweep.success)
        for seed in seeds:
            tid = seeded_id(content, seed)
            if tid not in seen:
                seen.add(tid)
                yield TrialConfig(tid, sweep.task, task_args, sweep.model, model_args, train, seed,
                                  sweep.max_steps, sweep.eval, sweep.success)

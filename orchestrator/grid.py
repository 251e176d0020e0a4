"""Grid expansion: a `Sweep` becomes the `TrialConfig`s it names, each with its id, lazily and in grid order.

`expand` yields them one by one (adaptive search, tests, the first trials a dry run shows); a
`Plan` checks a grid against the store and streams the trials still to run to the scheduler,
holding 10 bytes per trial rather than the trials (a grid of 10^6 trials: about 10 MB).
"""

from __future__ import annotations

import binascii
import dataclasses
import itertools
from collections.abc import Container, Iterator

import numpy as np

from paretolab.vocabulary.errors import SHOWN_CHARS, SpecError, clipped, shown
from paretolab.orchestrator.identity import ID_BYTES, ID_CHARS, PointIds, SweepIds, canonical_json, part_json
from paretolab.vocabulary.sweep import Sweep, Value
from paretolab.tasks.registry import tasks
from paretolab.models.registry import models
from paretolab.vocabulary.schema import RESERVED
from paretolab.vocabulary.trial import TrainArgs, TrialConfig


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


def choice_values(sweep: Sweep, name: str) -> list:
    """The values of `task` or `model` in the sweep: its one value, or those of its axis."""
    fixed = getattr(sweep, name)
    if fixed is not None:
        return [fixed]
    for axis, values in [*sweep.grid, *(a for group in sweep.zips for a in group)]:
        if axis == name:
            return list(dict.fromkeys(values))
    return []


def parameter_names(sweep: Sweep) -> list[str]:
    """The config columns the sweep's trials have (`TrialConfig.columns`), over all its tasks and models."""
    if sweep.code is not None:
        names = dict.fromkeys(["trainable", *dict(sweep.fixed)])
        names.update(dict.fromkeys(a for a in axes(sweep) if a != "trainable"))
        return [*names, *(["max_steps"] if sweep.max_steps is not None else []), "seed"]
    names = dict.fromkeys(["task", "model"])
    for task in choice_values(sweep, "task"):
        for model in choice_values(sweep, "model"):
            for cls in (tasks()[task].Args, models()[model].Args, TrainArgs):
                names.update(dict.fromkeys(f.name for f in dataclasses.fields(cls)))
    return [*names, "seed", "max_steps"]


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
    """Every trial of the sweep, lazily, in grid order, seeds innermost; duplicates are dropped.

    It remembers the ids it yielded (to drop duplicates): for grids that fit in memory and the first
    trials of any grid. A run streams its trials from a `Plan` instead.

    Raises:
        SpecError: a point whose parameters are invalid together (e.g. k > n), naming the point.
    """
    seen: set[str] = set()
    for point in _points(sweep):
        for seed in point.seeds:
            tid = point.ids.raw(seed).hex()
            if tid not in seen:
                seen.add(tid)
                yield point.trial(tid, seed)


class Plan:
    """A sweep's grid checked against the trials a store holds, to run in constant memory per trial.

    Planning walks the grid once, hashing ids without building a `TrialConfig`, and keeps 10 bytes
    per trial (its id, whether it counts and whether it runs); `pending` walks it again and builds
    only the trials to run, as the scheduler draws them. Duplicates (zip steps or values that give
    one trial twice) are dropped as in `expand`: the first in grid order stays.

    Args:
        ended: ids of trials that need not run (`Store.ended`).
    Raises:
        SpecError: a point whose parameters are invalid together, naming the point.
    """

    def __init__(self, sweep: Sweep, ended: Container[str] = frozenset()):
        self.sweep = sweep
        self._raw = bytearray()  # the ids, ID_BYTES each, in grid order
        contents = bytearray()  # each point's content, ID_BYTES each: only points alike repeat a trial
        done = bytearray()
        for point in _points(sweep):
            ids = [point.ids.raw(seed) for seed in point.seeds]
            self._raw += b"".join(ids)
            contents += point.ids.content()
            if ended:
                done += bytes(i.hex() in ended for i in ids)
        ids = np.frombuffer(self._raw, dtype=">u8")
        if _distinct(np.frombuffer(contents, dtype=">u8")) and len(set(sweep.seeds)) == len(sweep.seeds):
            self._kept = np.ones(len(ids), bool)
        else:
            self._kept = np.zeros(len(ids), bool)
            self._kept[np.unique(ids, return_index=True)[1]] = True  # the first of each id
        self._runs = self._kept & ~np.frombuffer(done, bool) if ended else self._kept
        self.total = int(self._kept.sum())
        self.to_run = int(self._runs.sum())
        self.already_done = self.total - self.to_run

    def trial_ids(self) -> np.ndarray:
        """Every trial's id in grid order (duplicates dropped), as a numpy array of str."""
        hex_ids = binascii.hexlify(np.frombuffer(self._raw, dtype=">u8")[self._kept].tobytes())
        return np.frombuffer(hex_ids, dtype=f"S{ID_CHARS}").astype(f"U{ID_CHARS}")

    @property
    def pending(self) -> Pending:
        """The trials to run, in grid order: iterated lazily, with `len()` known ahead."""
        return Pending(self)

    def _walk(self) -> Iterator[TrialConfig]:
        i = 0
        for point in _points(self.sweep):
            runs = self._runs[i:i + len(point.seeds)]
            if runs.any():
                for j in np.flatnonzero(runs).tolist():
                    yield point.trial(self._raw[ID_BYTES * (i + j):ID_BYTES * (i + j + 1)].hex(), point.seeds[j])
            i += len(point.seeds)


def _distinct(values: np.ndarray) -> bool:
    ordered = np.sort(values)
    return not (ordered[1:] == ordered[:-1]).any()


class Pending:
    """The trials of a `Plan` that run: `len()` of them, built one by one as they are iterated."""

    def __init__(self, plan: Plan):
        self.plan = plan

    def __len__(self) -> int:
        return self.plan.to_run

    def __iter__(self) -> Iterator[TrialConfig]:
        return self.plan._walk()


class _Point:
    """One validated point of a sweep: its arguments (or the parameters of the researcher's code),
    its seeds and its trials' ids."""

    __slots__ = ("sweep", "task_args", "model_args", "train", "seeds", "ids", "params", "task", "model", "code")

    def __init__(self, sweep: Sweep, task_args, model_args, train: TrainArgs | None, seeds: tuple[int, ...],
                 ids: PointIds, params: tuple = (), task: str | None = None, model: str | None = None, code=None):
        self.sweep, self.task_args, self.model_args, self.train, self.seeds, self.ids, self.params = \
            sweep, task_args, model_args, train, seeds, ids, params
        self.task, self.model, self.code = task, model, code

    def trial(self, trial_id: str, seed: int) -> TrialConfig:
        s = self.sweep
        return TrialConfig(trial_id, self.task, self.task_args, self.model, self.model_args, self.train, seed,
                           s.max_steps, s.eval, s.success, self.code, self.params)


# Validated arguments kept per owner while walking a grid: a grid repeats few values of each owner's
# parameters, so most points reuse their task's, model's and training arguments (checked, with their
# JSON) instead of building them again (a point of a 10^6-point grid: 4.9 us walked, 7.9 us built
# anew); the bound keeps a grid of many distinct values flat.
_MADE_LIMIT = 4096


def _points(sweep: Sweep) -> Iterator[_Point]:
    """The sweep's points in grid order, validated, each with its seeds and its trials' ids.

    Raises:
        SpecError: a point whose parameters are invalid together (e.g. k > n), naming the point.
    """
    if sweep.code is not None:
        yield from _code_points(sweep)
        return
    made: dict[tuple, tuple] = {}
    pairs: dict[tuple[str, str], _Pair] = {}
    per_value = {(axis, value): dict(args) for axis, value, args in sweep.per_value}

    def validated(kind, values: dict, make) -> tuple:
        # keyed by type too: 1, 1.0 and True are equal keys but different parameter values
        key = (kind, tuple(values.items()), tuple(map(type, values.values())))
        if (hit := made.get(key)) is None:
            if len(made) >= _MADE_LIMIT:
                made.clear()
            hit = made[key] = make()
        return hit

    for point in points(sweep):
        seeds = (point.pop("seed"),) if "seed" in point else sweep.seeds
        task, model = point.pop("task", sweep.task), point.pop("model", sweep.model)
        pair = pairs.get((task, model))
        if pair is None:
            pair = pairs[task, model] = _Pair(sweep, task, model)
        point.update(per_value.get(("task", task), ()))
        point.update(per_value.get(("model", model), ()))
        parts: dict[str, dict[str, Value]] = {"task": {}, "model": {}, "train": {}}
        for name, value in point.items():
            owner = pair.owners.get(name)
            if owner is not None:  # (else a parameter of another task or model of the sweep's axes)
                parts[owner][name] = value
        parts["train"].setdefault("loss", pair.task_cls.losses[0])  # each task's first loss is its default
        try:
            task_args, task_json, io = validated(("task", task), parts["task"], lambda: pair.task_part(parts["task"]))
            model_args, model_json = validated(("model", model, io), parts["model"],
                                               lambda: pair.model_part(parts["model"], io))
            train, train_json = validated(("train", task), parts["train"], lambda: pair.train_part(parts["train"]))
        except ValueError as e:
            shown_point = {**({"task": task} if sweep.task is None else {}),
                           **({"model": model} if sweep.model is None else {}), **point}
            values = ", ".join(f"{k}={shown(v)}" for k, v in sorted(shown_point.items()))
            raise SpecError(f"{sweep.path}: point {{{values}}}: {clipped(str(e), 2 * SHOWN_CHARS)}") from None
        yield _Point(sweep, task_args, model_args, train, seeds, pair.hashing.point(task_json, model_json, train_json),
                     task=task, model=model)


class _Pair:
    """What validating and hashing the points of one (task, model) pair of a sweep needs."""

    def __init__(self, sweep: Sweep, task: str, model: str):
        self.task, self.model = task, model
        self.owners = parameters(task, model)
        self.task_cls, self.model_cls = tasks()[task], models()[model]
        self.hashing = SweepIds(task, model, sweep.max_steps, sweep.eval, sweep.success)

    def task_part(self, values):
        args = self.task_cls.Args(**values)
        args.check()
        return args, part_json(args), self.task_cls.io(args)

    def model_part(self, values, io):
        args = self.model_cls.Args(**values)
        if io.kind not in self.model_cls.accepts:
            raise ValueError(f"model {self.model!r} takes {' or '.join(self.model_cls.accepts)} inputs, "
                             f"task {self.task!r} gives {io.kind} inputs")
        args.check(io)
        return args, part_json(args)

    def train_part(self, values):
        args = TrainArgs(**values)
        args.check()
        if args.loss not in self.task_cls.losses:
            raise ValueError(f"loss {shown(args.loss)} is not one of {', '.join(self.task_cls.losses)}")
        return args, part_json(args)


def _code_points(sweep: Sweep) -> Iterator[_Point]:
    """The points of a sweep of the researcher's code: its parameters as the spec gave them (checked
    there: the code itself is the judge of what they mean)."""
    codes = dict(sweep.codes) or {None: sweep.code}
    hashing = {name: SweepIds.of_code(code, sweep.max_steps, sweep.success) for name, code in codes.items()}
    for point in points(sweep):
        seeds = (point.pop("seed"),) if "seed" in point else sweep.seeds
        name = point.pop("trainable", None)
        params = tuple(sorted(point.items()))
        yield _Point(sweep, None, None, None, seeds, hashing[name].point(canonical_json(dict(params))), params,
                     code=codes[name])

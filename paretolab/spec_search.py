"""The `search` and `tune` keys of a spec: a frontier search, an Optuna search, per-cell tuning."""

from __future__ import annotations

from paretolab.vocabulary.errors import SpecError, shown
from paretolab.vocabulary.schema import RESULT_METRICS
from paretolab.vocabulary.sweep import FrontierSearchSpec, Objective, OptunaSearchSpec, SpaceAxis, TuneSpec
from paretolab.spec_values import (base_type, coerce, free_values, known_parameter, mapping, no_unknown, OpenParams,
                                   positive_int, seed_value, type_of)
from paretolab.tasks.registry import tasks

SAMPLERS = ("tpe", "random", "qmc", "grid", "nsga2")
# Optuna's samplers seed numpy, which takes seeds below 2**32; a resumed search seeds its sampler with
# `seed` + the trials already in its study (orchestrator/optuna_search.py), so this leaves 2**31 of room
MAX_SAMPLER_SEED = 2**31 - 1
PRUNERS = ("median", "successive_halving")
SEARCH_KEYS = {"frontier": ("mode", "axis", "by", "target_success", "seeds_per_probe", "max_seeds"),
               "optuna": ("mode", "sampler", "n_trials", "space", "objectives", "pruner", "seed")}
RANGE_KEYS = ("low", "high", "log", "step")  # a numeric axis of search.space, besides a list of choices
DIRECTIONS = ("minimize", "maximize")  # an objective: {direction: metric}
TUNE_KEYS = ("param", "values", "select", "seeds")


def parse_search(raw, task, model, owners, taken, axis_names, n_seeds, path):
    if raw is None:
        return None
    raw = mapping(raw, path, "search")
    mode = raw.get("mode", "optuna")
    if not isinstance(mode, str) or mode not in SEARCH_KEYS:
        raise SpecError(f"{path}: search.mode: unknown mode {shown(mode)}; known: {', '.join(SEARCH_KEYS)}")
    no_unknown(raw, SEARCH_KEYS[mode], path, "search.")
    if mode == "frontier":
        return _frontier_search(raw, axis_names, n_seeds, path)
    if axis_names:
        raise SpecError(f"{path}: search: an optuna search takes its axes from search.space, not grid/zip "
                        f"({', '.join(axis_names)}); move them there (a list is a categorical axis)")
    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpecError(f"{path}: search.sampler: unknown sampler {shown(sampler)}; known: {', '.join(SAMPLERS)}")
    pruner = raw.get("pruner")
    if pruner is not None and pruner not in PRUNERS:
        raise SpecError(f"{path}: search.pruner: unknown pruner {shown(pruner)}; known: {', '.join(PRUNERS)}")
    if raw.get("n_trials") is None:
        raise SpecError(f"{path}: search.n_trials: required for an optuna search (e.g. n_trials: 50)")
    space = tuple(_space_axis(name, spec, task, model, owners, taken, sampler, path)
                  for name, spec in mapping(raw.get("space"), path, "search.space").items())
    if not space:
        raise SpecError(f"{path}: search.space: an optuna search needs at least one axis, e.g. "
                        f"{{lr: {{low: 0.01, high: 1, log: true}}}}")
    objectives = _objectives(raw.get("objectives"), task, owners, path)
    return OptunaSearchSpec(sampler=sampler, n_trials=positive_int(raw["n_trials"], path, "search.n_trials"),
                        space=space, objectives=objectives, pruner=pruner,
                        seed=seed_value(raw.get("seed", 0), path, "search.seed", MAX_SAMPLER_SEED, "2**31-1"))


def _frontier_search(raw, axis_names, n_seeds, path) -> FrontierSearchSpec:
    axis = raw.get("axis")
    if axis not in axis_names:
        raise SpecError(f"{path}: search.axis: {shown(axis)} is not a grid or zip axis; axes: {', '.join(axis_names) or 'none'}")
    by = raw.get("by", [a for a in axis_names if a != axis])
    if not isinstance(by, list) or any(b not in axis_names or b == axis for b in by):
        raise SpecError(f"{path}: search.by: expected a list of the other grid/zip axes "
                        f"({', '.join(a for a in axis_names if a != axis) or 'none'}), got {shown(by)}")
    target = coerce(raw.get("target_success", 0.5), float, path, "search.target_success")
    if not 0 < target <= 1:
        raise SpecError(f"{path}: search.target_success: expected a probability in (0, 1], got {shown(target)}")
    per_probe = positive_int(raw.get("seeds_per_probe", min(8, n_seeds)), path, "search.seeds_per_probe")
    most = positive_int(raw.get("max_seeds", n_seeds), path, "search.max_seeds")
    if not per_probe <= most <= n_seeds:
        raise SpecError(f"{path}: search: need seeds_per_probe ({per_probe}) <= max_seeds ({most}) <= the "
                        f"spec's seed count ({n_seeds}); raise `seeds` or lower them")
    return FrontierSearchSpec(axis=axis, by=tuple(by), target_success=target, seeds_per_probe=per_probe, max_seeds=most)


def _space_axis(name, spec, task, model, owners, taken, sampler, path) -> SpaceAxis:
    key = f"search.space.{name}"
    known_parameter(name, owners, path, key)
    if name in taken:
        raise SpecError(f"{path}: {key}: {shown(name)} is also set elsewhere in the spec; set it in one place")
    ftype = type_of(task, model, name, owners)
    if isinstance(owners, OpenParams):  # the researcher's own parameter: its values make its type
        if isinstance(spec, list) and spec:
            return SpaceAxis(name, choices=tuple(dict.fromkeys(free_values(spec, path, key))))
        if isinstance(spec, dict):
            ftype = int if all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool)
                               for k in ("low", "high")) else float
    if isinstance(spec, list) and spec:
        return SpaceAxis(name, choices=tuple(dict.fromkeys(coerce(v, ftype, path, key) for v in spec)))
    base = base_type(ftype)
    if not isinstance(spec, dict) or base not in (int, float) or set(spec) - set(RANGE_KEYS) \
            or "low" not in spec or "high" not in spec:
        raise SpecError(f"{path}: {key}: expected a non-empty list of choices or, for a numeric parameter, "
                        f"{{low: L, high: H, log: true|false, step: S}}; got {shown(spec)}")
    if sampler == "grid":
        raise SpecError(f"{path}: {key}: the grid sampler needs a list of values, got the range {shown(spec)}")
    low, high = (coerce(spec[k], base, path, f"{key}.{k}") for k in ("low", "high"))
    log = spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool) or low >= high or (log and low <= 0) or (step is not None and log):
        raise SpecError(f"{path}: {key}: need low < high (and low > 0 with log: true; no step with log), got {shown(spec)}")
    return SpaceAxis(name, low=low, high=high, log=log, is_int=base is int,
                     step=None if step is None else coerce(step, base, path, f"{key}.step"))


def _objectives(raw, task, owners, path) -> tuple[Objective, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    known = (*RESULT_METRICS, *tasks()[task].metrics, *owners) if task is not None else None
    out = []
    for i, item in enumerate(items):
        key = f"search.objectives[{i}]"
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in DIRECTIONS:
            raise SpecError(f"{path}: {key}: expected {{minimize: METRIC}} or {{maximize: METRIC}}, got {shown(item)}")
        (direction, metric), = item.items()
        if (metric not in known) if known is not None else not (isinstance(metric, str) and metric.isidentifier()):
            raise SpecError(f"{path}: {key}: unknown metric {shown(metric)}; known: "
                            f"{', '.join(known) if known else 'a metric your code reports, a parameter, or ' + ', '.join(RESULT_METRICS)}")
        out.append(Objective(metric, direction))
    if not out:
        raise SpecError(f"{path}: search.objectives: required, e.g. [{{minimize: flops_to_success}}]")
    return tuple(out)


def parse_tune(raw, task, model, owners, taken, n_seeds, path) -> TuneSpec | None:
    if raw is None:
        return None
    raw = mapping(raw, path, "tune")
    no_unknown(raw, TUNE_KEYS, path, "tune.")
    name = raw.get("param")
    known_parameter(name, owners, path, "tune.param")
    if name in taken:
        raise SpecError(f"{path}: tune.param: {shown(name)} is also set elsewhere in the spec; set it in one place")
    ftype = type_of(task, model, name, owners)
    values = raw.get("values")
    if not isinstance(values, list) or len(values) < 2:
        raise SpecError(f"{path}: tune.values: expected a list of at least two values of {name}, got {shown(values)}")
    select = str(raw.get("select", "min steps_to_success")).split()
    known = (*RESULT_METRICS, *tasks()[task].metrics) if task is not None else None
    if len(select) != 2 or select[0] not in ("min", "max") or \
            ((select[1] not in known) if known is not None else not select[1].isidentifier()):
        raise SpecError(f"{path}: tune.select: expected 'min METRIC' or 'max METRIC' with a metric of "
                        f"{', '.join(known or ('a metric your code reports', *RESULT_METRICS))}; got {shown(raw.get('select'))}")
    seeds = positive_int(raw.get("seeds", min(2, n_seeds)), path, "tune.seeds")
    if seeds > n_seeds:
        raise SpecError(f"{path}: tune.seeds: {seeds} is more than the spec's {n_seeds} seeds")
    coerced = free_values(values, path, "tune.values") if isinstance(owners, OpenParams) else \
        [coerce(v, ftype, path, "tune.values") for v in values]
    return TuneSpec(param=name, values=tuple(dict.fromkeys(coerced)),
                metric=select[1], direction="minimize" if select[0] == "min" else "maximize", seeds=seeds)

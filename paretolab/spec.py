"""Sweep specs: a YAML file (or a Python file with `def trials()`) parsed into a validated `Sweep`.

Every problem is a `SpecError` whose message names the file, the key, the bad value and what is
allowed. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import runpy
import types
import typing
from pathlib import Path

from paretolab.errors import SpecError
from paretolab.orchestrator.grid import parameters
from paretolab.orchestrator.sweep import (FrontierSearch, Objective, OptunaSearch, Resources, SpaceAxis, Sweep,
                                          Tune, Value)
from paretolab.tasks.registry import tasks
from paretolab.tasks.success import Success
from paretolab.workers.models import models
from paretolab.workers.trial import EvalArgs, TrainArgs

TOP_KEYS = ("sweep", "task", "task_args", "model", "model_args", "grid", "zip", "fixed", "seeds",
            "max_steps", "eval", "success", "resources", "max_attempts", "search", "tune")
PY_KEYS = tuple(k for k in TOP_KEYS if k not in ("grid", "zip"))
REQUIRED = ("sweep", "task", "model", "max_steps")


def load_spec(path: str | Path) -> Sweep:
    """Read and validate the sweep spec at `path` (`.yaml`, `.yml` or `.py`).

    Raises:
        SpecError: the file is missing, unreadable or invalid; the message says where and why.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file")
    try:
        source = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text (byte {e.start}); save the spec as UTF-8") from None
    if path.suffix == ".py":
        return _from_python(path, source)
    if path.suffix not in (".yaml", ".yml"):
        raise SpecError(f"{path}: unknown spec format {path.suffix!r}; use .yaml, .yml or .py")
    return parse_yaml(source, str(path))


def parse_yaml(text: str, path: str = "<spec>") -> Sweep:
    """Validate the YAML text of a spec; `path` is used in error messages."""
    import yaml

    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: invalid YAML{where}: {problem}") from None
    return _build(raw, path, text, TOP_KEYS)


def _from_python(path: Path, source: str) -> Sweep:
    try:
        module = runpy.run_path(str(path), run_name="paretolab_spec")
    except Exception as e:
        raise SpecError(f"{path}: the spec raised {type(e).__name__}: {e}") from None
    if not callable(module.get("trials")):
        raise SpecError(f"{path}: a Python spec must define `def trials(): yield {{...}}`")
    spec = module.get("SPEC", {})
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: SPEC: expected a dict of spec keys ({', '.join(PY_KEYS)}), got {type(spec).__name__}")
    raw = dict(spec)
    raw.setdefault("sweep", path.stem)
    sweep = _build(raw, str(path), source, PY_KEYS)
    owners = parameters(sweep.task, sweep.model)
    fixed = dict(sweep.fixed)
    pts = []
    try:
        produced = list(module["trials"]())
    except Exception as e:
        raise SpecError(f"{path}: trials() raised {type(e).__name__}: {e}") from None
    for i, p in enumerate(produced):
        if not isinstance(p, dict):
            raise SpecError(f"{path}: trials() item {i}: expected a dict of parameters, got {type(p).__name__}")
        point = {}
        for name, value in p.items():
            key = f"trials()[{i}].{name}"
            if name == "seed":
                point[name] = _seed(value, path, key)
                continue
            _known(name, owners, path, key)
            if name in fixed:
                raise SpecError(f"{path}: {key}: {name!r} is also set in SPEC; set it in one place")
            point[name] = _coerce(value, _field_type(sweep, name, owners), path, key)
        pts.append(tuple(sorted(point.items())))
    if not pts:
        raise SpecError(f"{path}: trials() yielded no trials")
    return dataclasses.replace(sweep, points=tuple(pts))


def _build(raw: object, path: str, source: str, allowed: tuple[str, ...]) -> Sweep:
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys ({', '.join(allowed)}), got {type(raw).__name__}")
    _no_unknown(raw, allowed, path, "")
    for key in REQUIRED:
        if raw.get(key) is None:
            raise SpecError(f"{path}: {key}: required key is missing; add it (required: {', '.join(REQUIRED)})")
    name = raw["sweep"]
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{path}: sweep: expected a non-empty name, got {name!r}")
    task = _choice(raw["task"], tasks(), path, "task")
    model = _choice(raw["model"], models(), path, "model")
    owners = parameters(task, model)
    fixed: dict[str, Value] = {}
    for section, owner in (("task_args", "task"), ("model_args", "model"), ("fixed", None)):
        for pname, value in _mapping(raw.get(section, {}), path, section).items():
            key = f"{section}.{pname}"
            _known(pname, owners if owner is None else {k: o for k, o in owners.items() if o == owner}, path, key)
            if pname in fixed:
                raise SpecError(f"{path}: {key}: {pname!r} is set twice; set it in one place")
            fixed[pname] = _coerce(value, _type_of(task, model, pname, owners), path, key)
    grid = tuple(_axes(raw.get("grid", {}), "grid", task, model, owners, fixed, path))
    zips = _zips(raw.get("zip"), task, model, owners, fixed, {n for n, _ in grid}, path)
    seeds = _seeds(raw.get("seeds", 1), path)
    axis_names = [n for n, _ in grid] + [n for g in zips for n, _ in g]
    search = _search(raw.get("search"), task, model, owners, {**fixed, **dict.fromkeys(axis_names)}, axis_names,
                     len(seeds), path)
    tune = _tune(raw.get("tune"), task, model, owners, {**fixed, **dict.fromkeys(axis_names)}, len(seeds), path)
    if search is not None and tune is not None:
        raise SpecError(f"{path}: tune: per-cell tuning runs over a grid, not with a search; drop one of them")
    return Sweep(
        name=name.strip(), task=task, model=model, fixed=tuple(sorted(fixed.items())),
        grid=grid, zips=zips, points=None, seeds=seeds,
        max_steps=_positive_int(raw["max_steps"], path, "max_steps"),
        eval=_eval(raw.get("eval", {}), path), success=_success(raw.get("success", {}), task, path),
        resources=_resources(raw.get("resources", {}), path),
        max_attempts=_positive_int(raw.get("max_attempts", 3), path, "max_attempts"),
        path=path, source=source, search=search, tune=tune,
    )


def _axes(raw, section, task, model, owners, taken, path):
    for name, spec in _mapping(raw, path, section).items():
        key = f"{section}.{name}"
        if name == "seed":
            raise SpecError(f"{path}: {key}: seeds are not a grid axis; use the top-level `seeds` key")
        _known(name, owners, path, key)
        if name in taken:
            raise SpecError(f"{path}: {key}: {name!r} is also set elsewhere in the spec; set it in one place")
        taken = {**taken, name: None}
        ftype = _type_of(task, model, name, owners)
        values = _axis_values(spec, ftype, path, key)
        coerced = [_coerce(v, ftype, path, key) for v in values]
        if section == "grid":  # a repeated value on a grid axis would only repeat trials
            coerced = list(dict.fromkeys(coerced))
        yield name, tuple(coerced)


def _zips(raw, task, model, owners, fixed, grid_names, path):
    if raw is None:
        return ()
    groups = raw if isinstance(raw, list) else [raw]
    taken = {**fixed, **{n: None for n in grid_names}}
    out = []
    for i, group in enumerate(groups):
        section = "zip" if not isinstance(raw, list) else f"zip[{i}]"
        axes = tuple(_axes(group, section, task, model, owners, taken, path))
        if not axes:
            raise SpecError(f"{path}: {section}: a zip group needs at least one axis")
        lengths = {name: len(values) for name, values in axes}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            raise SpecError(f"{path}: {section}: zipped axes must have equal lengths, got {shown}")
        taken.update({n: None for n, _ in axes})
        out.append(axes)
    return tuple(out)


def _axis_values(spec, ftype, path, key) -> list:
    if isinstance(spec, list):
        if not spec:
            raise SpecError(f"{path}: {key}: an axis needs at least one value, got []")
        return spec
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, args), = spec.items()
        if kind == "range":
            nums = _numbers(args, (2, 3), path, f"{key}.range", "[start, stop] or [start, stop, step]")
            if not all(float(x).is_integer() for x in nums) or (len(nums) == 3 and nums[2] == 0):
                raise SpecError(f"{path}: {key}.range: expected integers with a non-zero step, got {args!r}")
            values = list(range(*(int(x) for x in nums)))
            if not values:
                raise SpecError(f"{path}: {key}.range: {args!r} is empty (stop is exclusive, as in Python)")
            return values
        if kind in ("logspace", "linspace"):
            lo, hi, num = _numbers(args, (3,), path, f"{key}.{kind}", "[lo, hi, num]")
            if num < 1 or not float(num).is_integer() or lo > hi or (kind == "logspace" and lo <= 0):
                need = "0 < lo <= hi" if kind == "logspace" else "lo <= hi"
                raise SpecError(f"{path}: {key}.{kind}: need {need} and a whole num >= 1, got {args!r}")
            values = _spaced(kind, lo, hi, int(num))
            if _base(ftype) is int:
                values = list(dict.fromkeys(int(round(v)) for v in values))
            return values
    raise SpecError(f"{path}: {key}: expected a list of values, {{range: [a, b]}}, "
                    f"{{logspace: [lo, hi, num]}} or {{linspace: [lo, hi, num]}}, got {spec!r}")


SAMPLERS = ("tpe", "random", "qmc", "grid", "nsga2")
PRUNERS = ("median", "successive_halving")
SEARCH_KEYS = {"frontier": ("mode", "axis", "by", "target_success", "seeds_per_probe", "max_seeds"),
               "optuna": ("mode", "sampler", "n_trials", "space", "objectives", "pruner", "seed")}
# what an objective or a selection rule may name, besides the task's metrics and the parameters
RESULT_METRICS = ("steps_to_success", "samples_to_success", "flops_to_success", "steps", "samples", "wall_s",
                  "train_loss", "train_error")


def _search(raw, task, model, owners, taken, axis_names, n_seeds, path):
    if raw is None:
        return None
    raw = _mapping(raw, path, "search")
    mode = raw.get("mode", "optuna")
    if mode not in SEARCH_KEYS:
        raise SpecError(f"{path}: search.mode: unknown mode {mode!r}; known: {', '.join(SEARCH_KEYS)}")
    _no_unknown(raw, SEARCH_KEYS[mode], path, "search.")
    if mode == "frontier":
        return _frontier_search(raw, axis_names, n_seeds, path)
    if axis_names:
        raise SpecError(f"{path}: search: an optuna search takes its axes from search.space, not grid/zip "
                        f"({', '.join(axis_names)}); move them there (a list is a categorical axis)")
    sampler = raw.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise SpecError(f"{path}: search.sampler: unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
    pruner = raw.get("pruner")
    if pruner is not None and pruner not in PRUNERS:
        raise SpecError(f"{path}: search.pruner: unknown pruner {pruner!r}; known: {', '.join(PRUNERS)}")
    if raw.get("n_trials") is None:
        raise SpecError(f"{path}: search.n_trials: required for an optuna search (e.g. n_trials: 50)")
    space = tuple(_space_axis(name, spec, task, model, owners, taken, sampler, path)
                  for name, spec in _mapping(raw.get("space"), path, "search.space").items())
    if not space:
        raise SpecError(f"{path}: search.space: an optuna search needs at least one axis, e.g. "
                        f"{{lr: {{low: 0.01, high: 1, log: true}}}}")
    objectives = _objectives(raw.get("objectives"), task, owners, path)
    return OptunaSearch(sampler=sampler, n_trials=_positive_int(raw["n_trials"], path, "search.n_trials"),
                        space=space, objectives=objectives, pruner=pruner,
                        seed=_seed(raw.get("seed", 0), path, "search.seed"))


def _frontier_search(raw, axis_names, n_seeds, path) -> FrontierSearch:
    axis = raw.get("axis")
    if axis not in axis_names:
        raise SpecError(f"{path}: search.axis: {axis!r} is not a grid or zip axis; axes: {', '.join(axis_names) or 'none'}")
    by = raw.get("by", [a for a in axis_names if a != axis])
    if not isinstance(by, list) or any(b not in axis_names or b == axis for b in by):
        raise SpecError(f"{path}: search.by: expected a list of the other grid/zip axes "
                        f"({', '.join(a for a in axis_names if a != axis) or 'none'}), got {by!r}")
    target = _coerce(raw.get("target_success", 0.5), float, path, "search.target_success")
    if not 0 < target <= 1:
        raise SpecError(f"{path}: search.target_success: expected a probability in (0, 1], got {target!r}")
    per_probe = _positive_int(raw.get("seeds_per_probe", min(8, n_seeds)), path, "search.seeds_per_probe")
    most = _positive_int(raw.get("max_seeds", n_seeds), path, "search.max_seeds")
    if not per_probe <= most <= n_seeds:
        raise SpecError(f"{path}: search: need seeds_per_probe ({per_probe}) <= max_seeds ({most}) <= the "
                        f"spec's seed count ({n_seeds}); raise `seeds` or lower them")
    return FrontierSearch(axis=axis, by=tuple(by), target_success=target, seeds_per_probe=per_probe, max_seeds=most)


def _space_axis(name, spec, task, model, owners, taken, sampler, path) -> SpaceAxis:
    key = f"search.space.{name}"
    _known(name, owners, path, key)
    if name in taken:
        raise SpecError(f"{path}: {key}: {name!r} is also set elsewhere in the spec; set it in one place")
    ftype = _type_of(task, model, name, owners)
    if isinstance(spec, list) and spec:
        return SpaceAxis(name, choices=tuple(dict.fromkeys(_coerce(v, ftype, path, key) for v in spec)))
    base = _base(ftype)
    if not isinstance(spec, dict) or base not in (int, float) or set(spec) - {"low", "high", "log", "step"} \
            or "low" not in spec or "high" not in spec:
        raise SpecError(f"{path}: {key}: expected a non-empty list of choices or, for a numeric parameter, "
                        f"{{low: L, high: H, log: true|false, step: S}}; got {spec!r}")
    if sampler == "grid":
        raise SpecError(f"{path}: {key}: the grid sampler needs a list of values, got the range {spec!r}")
    low, high = (_coerce(spec[k], base, path, f"{key}.{k}") for k in ("low", "high"))
    log = spec.get("log", False)
    step = spec.get("step")
    if not isinstance(log, bool) or low >= high or (log and low <= 0) or (step is not None and log):
        raise SpecError(f"{path}: {key}: need low < high (and low > 0 with log: true; no step with log), got {spec!r}")
    return SpaceAxis(name, low=low, high=high, log=log, is_int=base is int,
                     step=None if step is None else _coerce(step, base, path, f"{key}.step"))


def _objectives(raw, task, owners, path) -> tuple[Objective, ...]:
    items = raw if isinstance(raw, list) else [raw] if raw is not None else []
    known = (*RESULT_METRICS, *tasks()[task].metrics, *owners)
    out = []
    for i, item in enumerate(items):
        key = f"search.objectives[{i}]"
        if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in ("minimize", "maximize"):
            raise SpecError(f"{path}: {key}: expected {{minimize: METRIC}} or {{maximize: METRIC}}, got {item!r}")
        (direction, metric), = item.items()
        if metric not in known:
            raise SpecError(f"{path}: {key}: unknown metric {metric!r}; known: {', '.join(known)}")
        out.append(Objective(metric, direction))
    if not out:
        raise SpecError(f"{path}: search.objectives: required, e.g. [{{minimize: flops_to_success}}]")
    return tuple(out)


def _tune(raw, task, model, owners, taken, n_seeds, path) -> Tune | None:
    if raw is None:
        return None
    raw = _mapping(raw, path, "tune")
    _no_unknown(raw, ("param", "values", "select", "seeds"), path, "tune.")
    name = raw.get("param")
    _known(name, owners, path, "tune.param")
    if name in taken:
        raise SpecError(f"{path}: tune.param: {name!r} is also set elsewhere in the spec; set it in one place")
    ftype = _type_of(task, model, name, owners)
    values = raw.get("values")
    if not isinstance(values, list) or len(values) < 2:
        raise SpecError(f"{path}: tune.values: expected a list of at least two values of {name}, got {values!r}")
    select = str(raw.get("select", "min steps_to_success")).split()
    known = (*RESULT_METRICS, *tasks()[task].metrics)
    if len(select) != 2 or select[0] not in ("min", "max") or select[1] not in known:
        raise SpecError(f"{path}: tune.select: expected 'min METRIC' or 'max METRIC' with a metric of "
                        f"{', '.join(known)}; got {raw.get('select')!r}")
    seeds = _positive_int(raw.get("seeds", min(2, n_seeds)), path, "tune.seeds")
    if seeds > n_seeds:
        raise SpecError(f"{path}: tune.seeds: {seeds} is more than the spec's {n_seeds} seeds")
    return Tune(param=name, values=tuple(dict.fromkeys(_coerce(v, ftype, path, "tune.values") for v in values)),
                metric=select[1], direction="minimize" if select[0] == "min" else "maximize", seeds=seeds)


def _spaced(kind: str, lo: float, hi: float, num: int) -> list[float]:
    if num == 1:
        return [lo]
    if kind == "linspace":
        return [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (num - 1)) for i in range(num)]


def _numbers(args, counts, path, key, shape) -> list[float]:
    if not isinstance(args, list) or len(args) not in counts:
        raise SpecError(f"{path}: {key}: expected {shape}, got {args!r}")
    out = []
    for x in args:
        try:
            out.append(_to_float(x))
        except ValueError:
            raise SpecError(f"{path}: {key}: expected numbers {shape}, got {args!r}") from None
        if not math.isfinite(out[-1]):
            raise SpecError(f"{path}: {key}: expected finite numbers {shape}, got {args!r}")
    return out


def _seeds(raw, path) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"{path}: seeds: a count must be >= 1, got {raw}")
        return tuple(range(raw))
    if isinstance(raw, list) and raw:
        seeds = tuple(_seed(s, path, "seeds") for s in raw)
        if len(set(seeds)) != len(seeds):
            raise SpecError(f"{path}: seeds: the list repeats a seed: {list(raw)!r}")
        return seeds
    raise SpecError(f"{path}: seeds: expected a count (e.g. 5) or a non-empty list of integers, got {raw!r}")


def _seed(value, path, key) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{path}: {key}: a seed is an integer >= 0, got {value!r}")
    return value


def _eval(raw, path) -> EvalArgs:
    raw = _mapping(raw, path, "eval")
    _no_unknown(raw, ("every", "test_size"), path, "eval.")
    return EvalArgs(**{k: _positive_int(v, path, f"eval.{k}") for k, v in raw.items()})


def _success(raw, task, path) -> Success:
    raw = _mapping(raw, path, "success")
    _no_unknown(raw, ("metric", "op", "value", "stop_on_success"), path, "success.")
    s = Success(**{k: _coerce(v, _hints(Success)[k], path, f"success.{k}") for k, v in raw.items()})
    known = ("train_loss", "train_error", *tasks()[task].metrics)
    if s.metric not in known:
        raise SpecError(f"{path}: success.metric: unknown metric {s.metric!r} for task {task!r}; known: {', '.join(known)}")
    if not math.isfinite(s.value):
        raise SpecError(f"{path}: success.value: expected a finite number, got {raw.get('value')!r}")
    return s


def _resources(raw, path) -> Resources:
    raw = dict(_mapping(raw, path, "resources"))
    _no_unknown(raw, ("cpu", "gpu", "pack_size"), path, "resources.")
    pack = raw.pop("pack_size", "auto")
    out = {k: _coerce(v, float, path, f"resources.{k}") for k, v in raw.items()}
    if out.get("cpu", 1.0) <= 0 or out.get("gpu", 0.0) < 0:
        raise SpecError(f"{path}: resources: cpu must be > 0 and gpu >= 0, got {raw!r}")
    if pack != "auto":
        pack = _positive_int(pack, path, "resources.pack_size") if not isinstance(pack, str) else None
        if pack is None:
            raise SpecError(f"{path}: resources.pack_size: expected an integer >= 1 or auto, got {raw.get('pack_size')!r}")
    return Resources(**out, pack_size=None if pack == "auto" else pack)


def _positive_int(value, path, key) -> int:
    v = _coerce(value, int, path, key)
    if v < 1:
        raise SpecError(f"{path}: {key}: expected an integer >= 1, got {value!r}")
    return v


def _mapping(raw, path, key) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: {key}: expected a mapping of names to values, got {raw!r}")
    for k in raw:
        if not isinstance(k, str):
            raise SpecError(f"{path}: {key}: keys must be names, got {k!r}")
    return raw


def _no_unknown(raw: dict, allowed, path, prefix) -> None:
    for k in raw:
        if k not in allowed:
            raise SpecError(f"{path}: {prefix}{k}: unknown key; allowed: {', '.join(allowed)}")


def _choice(value, registry: dict, path, key) -> str:
    if not isinstance(value, str) or value not in registry:
        raise SpecError(f"{path}: {key}: unknown {key} {value!r}; known: {', '.join(sorted(registry))}")
    return value


def _known(name, owners: dict, path, key) -> None:
    if name not in owners:
        raise SpecError(f"{path}: {key}: unknown parameter {name!r}; known: {', '.join(sorted(owners))}")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _type_of(task, model, name, owners):
    cls = {"task": tasks()[task].Args, "model": models()[model].Args, "train": TrainArgs}[owners[name]]
    return _hints(cls)[name]


def _field_type(sweep: Sweep, name, owners):
    return _type_of(sweep.task, sweep.model, name, owners)


def _base(ftype):
    args = [a for a in typing.get_args(ftype) if a is not type(None)]
    return args[0] if typing.get_origin(ftype) in (typing.Union, types.UnionType) and len(args) == 1 else ftype


def _to_float(x) -> float:
    if isinstance(x, bool):
        raise ValueError
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        return float(x)  # YAML 1.1 reads `1e-3` as a string
    raise ValueError


def _coerce(value, ftype, path, key) -> Value:
    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(value, _base(ftype), path, key)
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(f"{path}: {key}: {value!r} is not allowed; allowed: {', '.join(map(str, args))}")
        return value
    try:
        if ftype is bool and isinstance(value, bool):
            return value
        if ftype is int:
            f = _to_float(value)
            if f.is_integer():
                return int(f)
        elif ftype is float:
            f = _to_float(value)
            if math.isfinite(f):
                return f
        elif ftype is str and isinstance(value, str):
            return value
    except (ValueError, OverflowError):
        pass
    kind = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(ftype, str(ftype))
    raise SpecError(f"{path}: {key}: expected {kind}, got {value!r}")

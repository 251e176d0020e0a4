"""Sweep specs: a YAML file (or a Python file with `def trials()`) parsed into a validated `Sweep`.

Every problem is a `SpecError` whose message names the file, the key, the bad value and what is
allowed. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import runpy
import unicodedata
from pathlib import Path

from paretolab.vocabulary.errors import SpecError, clipped, shown
from paretolab.orchestrator.grid import parameters
from paretolab.vocabulary.sweep import Resources, Sweep, Value
from paretolab.spec_search import parse_search, parse_tune
from paretolab.spec_values import (base_type, choice, coerce, field_type, free_type, free_values, hints, known_parameter,
                                   mapping, no_unknown, MAX_SEED_COUNT, OpenParams, positive_int, seed_value, to_float,
                                   type_of, UnionParams)
from paretolab.tasks.registry import tasks
from paretolab.vocabulary.success import Success
from paretolab.models.registry import models
from paretolab.vocabulary.trial import EvalArgs, TrainArgs

TOP_KEYS = ("sweep", "task", "task_args", "model", "model_args", "trainable", "command", "vectorized", "pack_by", "version",
            "timeout_s", "checkpoint_dir", "keep_checkpoints", "grid", "zip", "fixed", "seeds",
            "max_steps", "eval", "success", "resources", "max_attempts", "search", "tune")
PY_KEYS = tuple(k for k in TOP_KEYS if k not in ("grid", "zip"))
REQUIRED = ("sweep", "task", "model", "max_steps")
# the keys of the researcher's own code (`paretolab.user_code`), and those only built-in trials take
CODE_KEYS = ("trainable", "command", "vectorized", "pack_by", "version", "timeout_s", "checkpoint_dir",
             "keep_checkpoints")
BUILTIN_KEYS = ("task", "task_args", "model", "model_args", "eval")
EVAL_KEYS = ("every", "test_size")
SUCCESS_KEYS = ("metric", "op", "value", "stop_on_success")
RESOURCE_KEYS = ("cpu", "gpu", "pack_size")
TRAIN_METRICS = ("train_loss", "train_error")  # what every built-in trial records besides its task's metrics


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
        raise SpecError(f"{path}: unknown spec format {shown(path.suffix)}; use .yaml, .yml or .py")
    return parse_yaml(source, str(path))


def parse_yaml(text: str, path: str = "<spec>") -> Sweep:
    """Validate the YAML text of a spec; `path` is used in error messages."""
    from paretolab import spec_yaml

    return _build(spec_yaml.load(text, path), path, text, TOP_KEYS)


def parse_dict(keys: dict, path: str = "<dict>") -> Sweep:
    """Validate a spec given as a dict of the YAML keys (`paretolab.run({...})`, `paretolab.sweep(...)`),
    exactly as its YAML would be: it is written as YAML (kept as the sweep's submitted spec) and read
    back, so values are what a YAML file can hold. Relative paths (`trainable: train.py:main`) are
    from the current folder.

    Raises:
        SpecError: a value YAML cannot hold (a numpy number, an object), or an invalid spec.
    """
    import yaml

    if not isinstance(keys, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys ({', '.join(TOP_KEYS)}), got {type(keys).__name__}")
    try:
        text = yaml.safe_dump(_plain(keys), sort_keys=False, allow_unicode=True)
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: a value is not one a spec can hold ({shown(str(e).splitlines()[0])}); "
                        "use numbers, strings, booleans, None, lists and dicts") from None
    return parse_yaml(text, path)


def sweep(**keys) -> Sweep:
    """A sweep built in code from the spec's keys, checked as its YAML would be:
    `paretolab.sweep(sweep="s", task="sparse_parity", model="mlp", grid={"width": [16, 32]}, ...)`.

    Raises:
        SpecError: an invalid spec; the message names the key.
    """
    return parse_dict(keys, "<sweep()>")


def _plain(value):
    """Tuples as lists and numpy numbers as Python's (natural in Python code); the rest as given."""
    if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _raised(path: Path, where: str, e: BaseException) -> SpecError:
    """A Python spec's exception (or its `sys.exit()`: a spec never ends the command) as a spec error."""
    if isinstance(e, SystemExit):
        return SpecError(f"{path}: {where} called sys.exit({shown(e.code) if e.code is not None else ''}); a spec "
                         "defines trials() (and SPEC) and returns: remove the exit")
    try:
        text = clipped(str(e))
    except Exception:  # noqa: BLE001 - its __str__ raised too
        text = "(its message cannot be shown)"
    return SpecError(f"{path}: {where} raised {type(e).__name__}: {text}")


def _from_python(path: Path, source: str) -> Sweep:
    try:
        module = runpy.run_path(str(path), run_name="paretolab_spec")
    except KeyboardInterrupt:  # Ctrl-C stays Ctrl-C
        raise
    except BaseException as e:  # an exception, or sys.exit()
        raise _raised(path, "the spec", e) from None
    if not callable(module.get("trials")):
        raise SpecError(f"{path}: a Python spec must define `def trials(): yield {{...}}`")
    spec = module.get("SPEC", {})
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: SPEC: expected a dict of spec keys ({', '.join(PY_KEYS)}), got {type(spec).__name__}")
    raw = dict(spec)
    raw.setdefault("sweep", path.stem)
    sweep = _build(raw, str(path), source, PY_KEYS)
    owners = parameters(sweep.task, sweep.model) if sweep.code is None else OpenParams()
    fixed = dict(sweep.fixed)
    pts = []
    try:
        produced = list(module["trials"]())
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        raise _raised(path, "trials()", e) from None
    for i, p in enumerate(produced):
        if not isinstance(p, dict):
            raise SpecError(f"{path}: trials() item {i}: expected a dict of parameters, got {type(p).__name__}")
        point = {}
        for name, value in p.items():
            key = f"trials()[{i}].{name}"
            if name == "seed":
                point[name] = seed_value(value, path, key)
                continue
            known_parameter(name, owners, path, key)
            if name in fixed:
                raise SpecError(f"{path}: {key}: {shown(name)} is also set in SPEC; set it in one place")
            point[name] = coerce(value, field_type(sweep, name, owners) if sweep.code is None else object, path, key)
        pts.append(tuple(sorted(point.items())))
    if not pts:
        raise SpecError(f"{path}: trials() yielded no trials")
    return dataclasses.replace(sweep, points=tuple(pts))


def _build(raw: object, path: str, source: str, allowed: tuple[str, ...]) -> Sweep:
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys ({', '.join(allowed)}), got {type(raw).__name__}")
    no_unknown(raw, allowed, path, "")
    if raw.get("trainable") is not None or raw.get("command") is not None or "trainable" in _axis_keys(raw):
        return _build_code(raw, path, source)
    for key in REQUIRED:
        if raw.get(key) is None and key not in _axis_keys(raw):
            raise SpecError(f"{path}: {key}: required key is missing; add it (required: {', '.join(REQUIRED)}; "
                            "or `trainable:`/`command:` for your own training code)")
    for key in CODE_KEYS:
        if key in raw:
            raise SpecError(f"{path}: {key}: applies to your own code (`trainable:` or `command:`), not to the "
                            "built-in tasks; remove it")
    name = _name(raw, path)
    task_values = _choices(raw, "task", tasks(), path)
    model_values = _choices(raw, "model", models(), path)
    task = task_values[0] if "task" in _axis_keys(raw) else choice(raw["task"], tasks(), path, "task")
    model = model_values[0] if "model" in _axis_keys(raw) else choice(raw["model"], models(), path, "model")
    owners = UnionParams(task_values, model_values) if len(task_values) * len(model_values) > 1 else \
        parameters(task, model)
    fixed: dict[str, Value] = {}
    per_value: list[tuple[str, str, tuple]] = []
    for section, owner, values in (("task_args", "task", task_values), ("model_args", "model", model_values),
                                   ("fixed", None, ())):
        args = mapping(raw.get(section, {}), path, section)
        if owner is not None and owner in _axis_keys(raw):  # per-value arguments: {value: {param: value}}
            per_value += _per_value(args, section, owner, values, model_values if owner == "task" else task_values,
                                    path)
            continue
        for pname, value in args.items():
            key = f"{section}.{pname}"
            known_parameter(pname, owners if owner is None else {k: o for k, o in owners.items() if o == owner}, path, key)
            if pname in fixed:
                raise SpecError(f"{path}: {key}: {shown(pname)} is set twice; set it in one place")
            fixed[pname] = coerce(value, type_of(task, model, pname, owners), path, key)
    for _, _, args in per_value:
        for pname, _ in args:
            if pname in fixed:
                raise SpecError(f"{path}: {pname}: set both per value and in fixed; set it in one place")
    taken = {**fixed, **{p: None for _, _, args in per_value for p, _ in args}}
    grid = tuple(_axes(raw.get("grid", {}), "grid", task, model, owners, taken, path))
    zips = _zips(raw.get("zip"), task, model, owners, taken, {n for n, _ in grid}, path)
    seeds = _seeds(raw.get("seeds", 1), path)
    axis_names = [n for n, _ in grid] + [n for g in zips for n, _ in g]
    params = {**taken, **dict.fromkeys(axis_names)}
    search_task = task if len(task_values) == 1 else None  # several tasks: their metrics are checked as they run
    search = parse_search(raw.get("search"), search_task, model, owners, params, axis_names, len(seeds), path)
    tune = parse_tune(raw.get("tune"), search_task, model, owners, params, len(seeds), path)
    if search is not None and tune is not None:
        raise SpecError(f"{path}: tune: per-cell tuning runs over a grid, not with a search; drop one of them")
    success = None
    for t in task_values:
        success = _success(raw.get("success", {}), t, path)
    return Sweep(
        name=name, task=None if len(task_values) > 1 or "task" in _axis_keys(raw) else task,
        model=None if len(model_values) > 1 or "model" in _axis_keys(raw) else model, fixed=tuple(sorted(fixed.items())),
        grid=grid, zips=zips, points=None, seeds=seeds,
        max_steps=positive_int(raw["max_steps"], path, "max_steps"),
        eval=_eval(raw.get("eval", {}), path), success=success, per_value=tuple(per_value),
        resources=_resources(raw.get("resources", {}), path),
        max_attempts=positive_int(raw.get("max_attempts", 3), path, "max_attempts"),
        path=path, source=source, search=search, tune=tune,
    )


# what can be a grid or zip axis besides parameters: the task, the model, the researcher's function
CHOICE_AXES = ("task", "model", "trainable")
# an axis given by a rule instead of a list: {form: [numbers]}, with the counts of numbers each takes
AXIS_FORMS = {"range": (2, 3), "logspace": (3,), "linspace": (3,)}


def _axis_keys(raw: dict) -> set[str]:
    """The names among CHOICE_AXES that the spec's grid or zip groups make axes."""
    found = set()
    for section in (raw.get("grid"), *(raw.get("zip") if isinstance(raw.get("zip"), list) else [raw.get("zip")])):
        if isinstance(section, dict):
            found.update(k for k in section if k in CHOICE_AXES)
    return found


def _choices(raw: dict, name: str, registry: dict, path: str) -> list[str]:
    """The values of `task` or `model`: the top-level key's one value, or the values of its axis.

    Raises:
        SpecError: both given, an unknown value, or a repeated one.
    """
    where = [f"{section}.{name}" for section in ("grid", "zip") if isinstance(raw.get(section), dict) and name in raw[section]]
    where += [f"zip[{i}].{name}" for i, g in enumerate(raw.get("zip") or []) if isinstance(raw.get("zip"), list)
              and isinstance(g, dict) and name in g]
    if not where:
        return [choice(raw[name], registry, path, name)]
    if raw.get(name) is not None:
        raise SpecError(f"{path}: {name}: also an axis ({where[0]}); set it in one place")
    if len(where) > 1:
        raise SpecError(f"{path}: {where[1]}: {name} is also an axis in {where[0]}; set it in one place")
    key = where[0]
    section = raw["grid"] if key.startswith("grid") else raw["zip"] if key.startswith("zip.") else \
        raw["zip"][int(key[4:key.index("]")])]
    values = section[name]
    if not isinstance(values, list) or not values:
        raise SpecError(f"{path}: {key}: expected a list of {name}s, e.g. [{', '.join(sorted(registry)[:2])}], got {shown(values)}")
    return [choice(v, registry, path, key) for v in values]


def _per_value(args: dict, section: str, owner: str, values: list[str], others: list[str], path: str
               ) -> list[tuple[str, str, tuple]]:
    """`model_args: {lstm: {hidden: 64, lr: 0.001}, transformer: {...}}` where `model` is an axis:
    (owner, value, its arguments) for each value given. A value's arguments are its own and the
    training arguments (a learning rate per model, say); `others` are the values of the other axis."""
    out = []
    for value, given in args.items():
        if value not in values:
            raise SpecError(f"{path}: {section}.{value}: {shown(value)} is not a value of the {owner} axis "
                            f"({', '.join(values)}); with {owner} as an axis, {section} maps each {owner} to its arguments")
        given = mapping(given, path, f"{section}.{value}")
        fields = _owner_fields(owner, value, others)
        checked = []
        for pname, v in given.items():
            if pname not in fields:
                raise SpecError(f"{path}: {section}.{value}.{pname}: unknown parameter {shown(pname)} of {owner} "
                                f"{value}; known: {', '.join(sorted(fields))}")
            checked.append((pname, coerce(v, fields[pname], path, f"{section}.{value}.{pname}")))
        out.append((owner, value, tuple(sorted(checked))))
    return out


def _owner_fields(owner: str, value: str, others: list[str]) -> dict:
    """{parameter: type} that one value of the task or model axis may set: its own and the training arguments."""
    fields = dict(hints(TrainArgs))
    for other in others:
        task, model = (value, other) if owner == "task" else (other, value)
        parameters(task, model)  # a clash of names is an error here too
    fields.update(hints((tasks() if owner == "task" else models())[value].Args))
    return fields


def _name(raw: dict, path: str) -> str:
    name = raw["sweep"]
    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{path}: sweep: expected a non-empty name, got {shown(name)}")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):  # an escape sequence, a newline: a slip, and
        # a name that would rewrite the terminal wherever it is shown
        raise SpecError(f"{path}: sweep: a name cannot hold control characters, got {shown(name)}; "
                        "use letters, digits and punctuation")
    return name.strip()


def _build_code(raw: dict, path: str, source: str) -> Sweep:
    """A sweep of the researcher's own code: a function (`trainable`) or a command."""
    from paretolab import user_code

    if raw.get("sweep") is None:
        raise SpecError(f"{path}: sweep: required key is missing; add a name for the sweep")
    if raw.get("trainable") is not None and raw.get("command") is not None:
        raise SpecError(f"{path}: trainable, command: a sweep runs one or the other; keep one")
    for key in BUILTIN_KEYS:
        if key in raw:
            hint = "; give your code's parameters under fixed, grid or zip" if key.endswith("args") else ""
            raise SpecError(f"{path}: {key}: applies to built-in trials, not to your own code{hint}")
    name = _name(raw, path)
    owners = OpenParams()
    fixed: dict[str, Value] = {}
    for pname, value in mapping(raw.get("fixed", {}), path, "fixed").items():
        known_parameter(pname, owners, path, f"fixed.{pname}")
        fixed[pname] = coerce(value, object, path, f"fixed.{pname}")
        owners[pname] = free_type([fixed[pname]])
    grid = tuple(_axes(raw.get("grid", {}), "grid", None, None, owners, fixed, path))
    zips = _zips(raw.get("zip"), None, None, owners, fixed, {n for n, _ in grid}, path)
    seeds = _seeds(raw.get("seeds", 1), path)
    max_steps = None if raw.get("max_steps") is None else positive_int(raw["max_steps"], path, "max_steps")
    axis_names = [n for n, _ in grid] + [n for g in zips for n, _ in g]
    params = {**fixed, **dict.fromkeys(axis_names)}
    search = parse_search(raw.get("search"), None, None, owners, params, axis_names, len(seeds), path)
    tune = parse_tune(raw.get("tune"), None, None, owners, params, len(seeds), path)
    if search is not None and tune is not None:
        raise SpecError(f"{path}: tune: per-cell tuning runs over a grid, not with a search; drop one of them")
    names = set(params) - {"trainable"} | {a.name for a in getattr(search, "space", ())} | \
        ({tune.param} if tune else set()) | ({"max_steps"} if max_steps is not None else set())
    if "trainable" in _axis_keys(raw):  # several functions, one per value of the axis
        targets = _choices(raw, "trainable", _Anything(), path)
        codes = tuple((t, user_code.resolve({**raw, "trainable": t}, path, names)) for t in dict.fromkeys(targets))
        code = codes[0][1]
    else:
        codes, code = (), user_code.resolve(raw, path, names)
    return Sweep(
        name=name, task=None, model=None, fixed=tuple(sorted(fixed.items())), grid=grid, zips=zips, points=None,
        seeds=seeds, max_steps=max_steps, eval=None, success=_success(raw.get("success", {}), None, path),
        resources=_resources(raw.get("resources", {}), path),
        max_attempts=positive_int(raw.get("max_attempts", 3), path, "max_attempts"),
        path=path, source=source, search=search, tune=tune, code=code, codes=codes,
    )


class _Anything(dict):
    """Any value passes `choice` (a trainable is checked by importing it)."""

    def __contains__(self, value) -> bool:
        return isinstance(value, str)


def _axes(raw, section, task, model, owners, taken, path):
    for name, spec in mapping(raw, path, section).items():
        key = f"{section}.{name}"
        if name == "seed":
            raise SpecError(f"{path}: {key}: seeds are not a grid axis; use the top-level `seeds` key")
        if name in CHOICE_AXES and (name == "trainable") == isinstance(owners, OpenParams):  # checked by _choices
            values = list(spec)
            if section == "grid":
                values = list(dict.fromkeys(values))
            yield name, tuple(values)
            continue
        known_parameter(name, owners, path, key)
        if name in taken:
            raise SpecError(f"{path}: {key}: {shown(name)} is also set elsewhere in the spec; set it in one place")
        taken = {**taken, name: None}
        ftype = type_of(task, model, name, owners)
        values = _axis_values(spec, ftype, path, key)
        if isinstance(owners, OpenParams):  # the researcher's own parameter: its values make its type
            coerced = free_values(values, path, key)
            owners[name] = free_type(coerced)
        else:
            coerced = [coerce(v, ftype, path, key) for v in values]
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
            nums = _numbers(args, AXIS_FORMS[kind], path, f"{key}.range", "[start, stop] or [start, stop, step]")
            if not all(float(x).is_integer() for x in nums) or (len(nums) == 3 and nums[2] == 0):
                raise SpecError(f"{path}: {key}.range: expected integers with a non-zero step, got {shown(args)}")
            values = list(range(*(int(x) for x in nums)))
            if not values:
                raise SpecError(f"{path}: {key}.range: {shown(args)} is empty (stop is exclusive, as in Python)")
            return values
        if kind in ("logspace", "linspace"):
            lo, hi, num = _numbers(args, AXIS_FORMS[kind], path, f"{key}.{kind}", "[lo, hi, num]")
            if num < 1 or not float(num).is_integer() or lo > hi or (kind == "logspace" and lo <= 0):
                need = "0 < lo <= hi" if kind == "logspace" else "lo <= hi"
                raise SpecError(f"{path}: {key}.{kind}: need {need} and a whole num >= 1, got {shown(args)}")
            values = _spaced(kind, lo, hi, int(num))
            if base_type(ftype) is int:
                values = list(dict.fromkeys(int(round(v)) for v in values))
            return values
    raise SpecError(f"{path}: {key}: expected a list of values, {{range: [a, b]}}, "
                    f"{{logspace: [lo, hi, num]}} or {{linspace: [lo, hi, num]}}, got {shown(spec)}")


def _spaced(kind: str, lo: float, hi: float, num: int) -> list[float]:
    if num == 1:
        return [lo]
    if kind == "linspace":
        return [lo + (hi - lo) * i / (num - 1) for i in range(num)]
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + (b - a) * i / (num - 1)) for i in range(num)]


def _numbers(args, counts, path, key, shape) -> list[float]:
    if not isinstance(args, list) or len(args) not in counts:
        raise SpecError(f"{path}: {key}: expected {shape}, got {shown(args)}")
    out = []
    for x in args:
        try:
            out.append(to_float(x))
        except ValueError:
            raise SpecError(f"{path}: {key}: expected numbers {shape}, got {shown(args)}") from None
        if not math.isfinite(out[-1]):
            raise SpecError(f"{path}: {key}: expected finite numbers {shape}, got {shown(args)}")
    return out


def _seeds(raw, path) -> tuple[int, ...]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"{path}: seeds: a count must be >= 1, got {raw}")
        if raw > MAX_SEED_COUNT:
            raise SpecError(f"{path}: seeds: a count must be at most {MAX_SEED_COUNT:,} (seeds per grid point), "
                            f"got {shown(raw)}")
        return tuple(range(raw))
    if isinstance(raw, list) and raw:
        seeds = tuple(seed_value(s, path, "seeds") for s in raw)
        if len(set(seeds)) != len(seeds):
            raise SpecError(f"{path}: seeds: the list repeats a seed: {shown(list(raw))}")
        return seeds
    raise SpecError(f"{path}: seeds: expected a count (e.g. 5) or a non-empty list of integers, got {shown(raw)}")


def _eval(raw, path) -> EvalArgs:
    raw = mapping(raw, path, "eval")
    no_unknown(raw, EVAL_KEYS, path, "eval.")
    return EvalArgs(**{k: positive_int(v, path, f"eval.{k}") for k, v in raw.items()})


def _success(raw, task, path) -> Success:
    raw = mapping(raw, path, "success")
    no_unknown(raw, SUCCESS_KEYS, path, "success.")
    s = Success(**{k: coerce(v, hints(Success)[k], path, f"success.{k}") for k, v in raw.items()})
    if task is None:  # the researcher's code reports the metrics it wants
        if not s.metric.isidentifier():
            raise SpecError(f"{path}: success.metric: expected the name of a metric your code reports, got {shown(s.metric)}")
    elif s.metric not in (known := (*TRAIN_METRICS, *tasks()[task].metrics)):
        raise SpecError(f"{path}: success.metric: unknown metric {shown(s.metric)} for task {shown(task)}; known: {', '.join(known)}")
    if not math.isfinite(s.value):
        raise SpecError(f"{path}: success.value: expected a finite number, got {shown(raw.get('value'))}")
    return s


def _resources(raw, path) -> Resources:
    raw = dict(mapping(raw, path, "resources"))
    no_unknown(raw, RESOURCE_KEYS, path, "resources.")
    pack = raw.pop("pack_size", "auto")
    out = {k: coerce(v, float, path, f"resources.{k}") for k, v in raw.items()}
    if out.get("cpu", 1.0) <= 0 or out.get("gpu", 0.0) < 0:
        raise SpecError(f"{path}: resources: cpu must be > 0 and gpu >= 0, got {shown(raw)}")
    if pack != "auto":
        pack = positive_int(pack, path, "resources.pack_size") if not isinstance(pack, str) else None
        if pack is None:
            raise SpecError(f"{path}: resources.pack_size: expected an integer >= 1 or auto, got {shown(raw.get('pack_size'))}")
    return Resources(**out, pack_size=None if pack == "auto" else pack)

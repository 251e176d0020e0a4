"""The JSON Schema (draft 2020-12) of a YAML sweep spec, built from the parser's own constants, so
that an editor checks and completes a spec as it is typed (docs/specs.md, "Editor completion and
the JSON Schema"). `spec.schema.json`, beside this module, is the schema of the built-in tasks and
models; `paretolab schema` prints the one of the installed tasks and models.

The schema is looser than the parser, never stricter: it checks each key's shape, type, range and
allowed values, and the parameters of a task and a model named at the top of the spec, but not the
rules between keys (a parameter set twice, `k <= n`, a frontier axis that is not a grid axis, code
that does not import). Every spec the parser takes validates; `paretolab run SPEC --dry-run` is
the full check, with the parser's one-line errors.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote

SCHEMA_FILE = Path(__file__).with_name("spec.schema.json")
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# a number written as a string: YAML 1.1 reads `1e-3` so, and the parser takes it (`spec_values.to_float`)
NUMBER_TEXT = r"^\s*[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?\s*$"
# a sweep's name: not blank, and no control characters (Unicode's Cc: an escape sequence, a newline)
NAME = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"

HELP = {  # what an editor shows beside each top-level key
    "sweep": "The sweep's name (a trial may belong to several sweeps).",
    "task": "The built-in (or plug-in) task the trials learn; may instead be a grid or zip axis.",
    "task_args": "The task's arguments; with `task` as an axis, a mapping of each task to its arguments.",
    "model": "The model trained; may instead be a grid or zip axis.",
    "model_args": "The model's arguments; with `model` as an axis, a mapping of each model to its arguments "
                  "(training arguments included).",
    "trainable": "Your own function as the trial: file.py:function (in the spec's folder) or module:function.",
    "command": "Your own command as the trial: a list of arguments (or one string) with {parameter} placeholders.",
    "vectorized": "file.py:function or module:function that trains a list of configs at once (packing).",
    "pack_by": "Parameters that must be equal among the trials that `vectorized` trains together.",
    "version": "Your code's version, part of every trial's id: change it when code the hash misses changes.",
    "timeout_s": "A command running longer than this is ended and its trial recorded as failed.",
    "checkpoint_dir": "Where trials keep checkpoints: a folder or a URI (s3://bucket/prefix); default: the store's.",
    "keep_checkpoints": "Keep a trial's checkpoint once it has ended (default: deleted).",
    "grid": "Axes crossed as a cartesian product: parameter -> list of values, or {range|logspace|linspace: [...]}.",
    "zip": "Axes that move together (equal lengths), crossed with the grid: a mapping, or a list of them.",
    "fixed": "Parameters set once for every trial.",
    "seeds": "A count N (seeds 0..N-1) or a list of seeds, per grid point.",
    "max_steps": "Training steps per trial (the budget; a trial may stop at success).",
    "eval": "Evaluate every `every` steps (and at step 0 and the last step) on `test_size` held-out points.",
    "success": "The success criterion `metric op value`, checked at every evaluation.",
    "resources": "One worker slot: CPU cores, a GPU (or a fraction), trials packed per worker.",
    "max_attempts": "Attempts per trial when its worker dies (default 3).",
    "search": "Search instead of the whole grid: a frontier search (mode: frontier) or an Optuna search.",
    "tune": "Per-cell tuning of one parameter before the full seed budget.",
}


def build_schema(task_registry: dict | None = None, model_registry: dict | None = None) -> dict:
    """The JSON Schema of a YAML sweep spec for the given tasks and models.

    Args:
        task_registry: {name: Task class} (default: every installed task, `tasks.registry.tasks()`).
        model_registry: {name: Model class} (default: every installed model).

    Returns:
        The schema as a JSON-ready dict (`render` writes it as the shipped file is written).
    """
    from paretolab.spec import TOP_KEYS, TrainArgs
    from paretolab.tasks.registry import tasks
    from paretolab.models.registry import models

    task_registry = dict(sorted((tasks() if task_registry is None else task_registry).items()))
    model_registry = dict(sorted((models() if model_registry is None else model_registry).items()))
    defs = {**_common_defs(list(task_registry), list(model_registry)), **_sections()}
    for kind, registry in (("task", task_registry), ("model", model_registry)):
        for name, cls in registry.items():
            defs.update(_field_defs(f"{kind}.{name}", cls.Args, f"{kind} {name}"))
    defs.update(_field_defs("train", TrainArgs, "training"))
    conditions = _own_code_rules()
    conditions += [_task_rule(name, cls, defs) for name, cls in task_registry.items()]
    conditions += [_model_rule(name, cls, defs) for name, cls in model_registry.items()]
    conditions += [_pair_rule(t, m, defs) for t in task_registry for m in model_registry if _pair_params(t, m)]
    conditions.append(_per_value_rule("task", task_registry, defs))
    conditions.append(_per_value_rule("model", model_registry, defs))
    properties = _top_properties(list(task_registry), list(model_registry))
    assert set(properties) == set(TOP_KEYS), set(properties) ^ set(TOP_KEYS)  # a new key needs its schema here
    return {
        "$schema": DIALECT,
        "title": "paretolab sweep spec",
        "description": "A YAML sweep spec of paretolab (docs/specs.md). Checks shapes and allowed values; "
                       "`paretolab run SPEC --dry-run` checks the rest.",
        "$comment": "Generated by paretolab.spec_schema from the parser's constants; regenerate with "
                    "`python -m paretolab.spec_schema`.",
        "type": "object",
        "properties": {k: properties[k] for k in TOP_KEYS},
        "additionalProperties": False,
        "allOf": conditions,
        "$defs": defs,
    }


def schema() -> dict:
    """The schema of the installed tasks and models: the shipped file when no plug-in is installed
    (read without importing the parser or torch), else built from the registries."""
    from paretolab.models.registry import GROUP as MODELS_GROUP
    from paretolab.tasks.registry import GROUP as TASKS_GROUP

    if SCHEMA_FILE.is_file() and not any(entry_points(group=g) for g in (TASKS_GROUP, MODELS_GROUP)):
        return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return build_schema()


def builtin_schema() -> dict:
    """The schema of the built-in tasks and models only: what `spec.schema.json` holds."""
    from paretolab.tasks.registry import BUILTIN as TASKS
    from paretolab.models.registry import BUILTIN as MODELS

    return build_schema(TASKS, MODELS)


def render(schema: dict) -> str:
    """The schema as the shipped file holds it: indented JSON with a final newline."""
    return json.dumps(schema, indent=1, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------
# building blocks


def _ref(*parts: str) -> dict:
    """{"$ref": "#/$defs/<name>"} for the definition named by `parts` joined with dots."""
    pointer = ".".join(parts).replace("~", "~0").replace("/", "~1")
    return {"$ref": "#/$defs/" + quote(pointer, safe=".~_-")}


def _nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def _common_defs(task_names: list[str], model_names: list[str]) -> dict:
    from paretolab.spec import AXIS_FORMS
    from paretolab.spec_values import MAX_NAME_CHARS

    number_text = {"type": "string", "pattern": NUMBER_TEXT, "description": "A number written as text (e.g. 1e-3)."}
    forms = [{"type": "object", "required": [form], "additionalProperties": False,
              "properties": {form: {"type": "array", "minItems": min(counts), "maxItems": max(counts),
                                    "items": _ref("number")}}} for form, counts in AXIS_FORMS.items()]
    choice_axes = {"task": _list_of({"enum": task_names}), "model": _list_of({"enum": model_names}),
                   "trainable": _list_of({"type": "string"})}
    return {
        "number_text": number_text,
        "integer": {"anyOf": [{"type": "integer"}, _ref("number_text")]},
        "number": {"anyOf": [{"type": "number"}, _ref("number_text")]},
        "positive_integer": {"anyOf": [{"type": "integer", "minimum": 1}, _ref("number_text")]},
        "scalar": {"type": ["number", "string", "boolean", "null"]},
        "axis_rule": {"anyOf": forms, "description": "{range: [start, stop(, step)]} (stop exclusive, as in Python), "
                                                     "{logspace: [lo, hi, num]} or {linspace: [lo, hi, num]}"},
        "axis": {"anyOf": [_list_of(_ref("scalar")), _ref("axis_rule")]},
        "names": {"type": ["object", "null"], "propertyNames": {"maxLength": MAX_NAME_CHARS}},
        "axes": {"allOf": [_ref("names")], "propertyNames": {"not": {"const": "seed"}}, "properties": choice_axes,
                 "additionalProperties": _ref("axis")},
        "zip_group": {"allOf": [_ref("axes")], "type": "object", "minProperties": 1},
    }


def _list_of(items: dict, least: int = 1) -> dict:
    return {"type": "array", "minItems": least, "items": items}


def _value(ftype) -> dict:
    """The schema of one value of a parameter of type `ftype` (as the parser's `coerce` takes it)."""
    from paretolab.spec_values import base_type

    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        inner = _value(base_type(ftype))
        return _nullable(inner) if type(None) in args and inner else inner
    return {int: _ref("integer"), float: _ref("number"), bool: {"type": "boolean"},
            str: {"type": "string"}}.get(ftype, {})


def _type_name(ftype) -> str:
    return getattr(ftype, "__name__", None) or str(ftype).replace("typing.", "")


def _field_defs(prefix: str, cls, label: str) -> dict:
    """For each field of the dataclass `cls`: `prefix`.field, the schema of its value (its type and
    default as help), and axis.`prefix`.field, the schema of an axis of its values."""
    from paretolab.spec_values import hints

    out = {}
    for f in dataclasses.fields(cls):
        ftype = hints(cls)[f.name]
        default = None if f.default is dataclasses.MISSING else f.default
        try:
            shown = {"default": json.loads(json.dumps(default))}
        except (TypeError, ValueError):  # a plug-in's default that JSON cannot hold: described, not given
            shown = {}
        text = json.dumps(shown["default"]) if shown else repr(default)
        out[f"{prefix}.{f.name}"] = {**_value(ftype), "description": f"{label} argument: {_type_name(ftype)}, "
                                                                   f"default {text}", **shown}
        out[f"axis.{prefix}.{f.name}"] = _axis_of(_ref(prefix, f.name))
    return out


def _axis_of(value: dict) -> dict:
    return {"anyOf": [_list_of(value), _ref("axis_rule")]}


def _pair_params(task: str, model: str) -> dict[str, str]:
    """{parameter: owner} of a task and model (the parser's own `parameters`); {} when the pair clashes."""
    from paretolab.orchestrator.grid import parameters
    from paretolab.vocabulary.errors import SpecError

    try:
        return parameters(task, model)
    except SpecError:  # two owners declare one name: the parser refuses the pair
        return {}


def _param_ref(task: str | None, model: str | None, name: str, owner: str, axis: bool = False) -> dict:
    """The definition of parameter `name` of `owner` (task, model or train) in a sweep of `task` and `model`."""
    if owner == "train" and name == "loss" and task is not None:  # the losses a task takes
        return _ref(*("axis",) * axis, "losses", task)
    return _ref(*("axis",) * axis, *{"task": ("task", task), "model": ("model", model), "train": ("train",)}[owner], name)


def _object(properties: dict, **more) -> dict:
    return {"type": "object", "properties": properties, "additionalProperties": False, **more}


def _when(condition: dict, then: dict) -> dict:
    return {"if": condition, "then": then}


def _given(key: str, value: str) -> dict:
    """The condition: top-level `key` is `value`."""
    return {"properties": {key: {"const": value}}, "required": [key]}


def _absent_or_null(key: str) -> dict:
    """The condition: top-level `key` is not given (the parser reads null as not given)."""
    return {"anyOf": [{"not": {"required": [key]}}, {"properties": {key: {"type": "null"}}}]}


# ---------------------------------------------------------------------------------------------
# the rules between keys that the schema does check


def _own_code_rules() -> list[dict]:
    """A sweep of your own code (`trainable`, `command`, or a trainable axis) takes none of the keys
    of built-in trials, and they none of its keys; a command is never packed, a function never timed out."""
    from paretolab.spec import BUILTIN_KEYS, CHOICE_AXES, CODE_KEYS, REQUIRED
    from paretolab.vocabulary.schema import RESERVED

    given = [{"not": _absent_or_null(k)} for k in ("trainable", "command")]
    has_axis = {"type": "object", "required": ["trainable"]}
    as_axis = [{"required": ["grid"], "properties": {"grid": has_axis}},
               {"required": ["zip"], "properties": {"zip": {"anyOf": [has_axis, {"type": "array", "contains": has_axis}]}}}]
    free = {"propertyNames": {"not": {"enum": sorted(RESERVED)}}}  # a parameter never shadows a result column
    code = {"fixed": free, "grid": free, "zip": {"anyOf": [free, {"type": "array", "items": free}]},
            **{k: False for k in BUILTIN_KEYS}}
    pack_by = {"required": ["pack_by"], "properties": {"pack_by": {"type": "array", "minItems": 1}}}
    return [
        {"if": {"anyOf": given + as_axis},
         "then": {"required": ["sweep"], "properties": code},
         "else": {"required": [k for k in REQUIRED if k not in CHOICE_AXES], "properties": {k: False for k in CODE_KEYS}}},
        {"not": {"allOf": given}},  # a function or a command, not both
        _when(given[1], {"properties": {k: {"type": "null"} for k in ("vectorized", "pack_by")}}),
        _when({"allOf": [given[0], _absent_or_null("command")]}, {"properties": {"timeout_s": {"type": "null"}}}),
        _when(pack_by, {"not": _absent_or_null("vectorized")}),
    ]


def _task_rule(name: str, cls, defs: dict) -> dict:
    """With `task: name`: its arguments, its losses and its metrics."""
    from paretolab.spec import TRAIN_METRICS

    defs[f"losses.{name}"] = {"enum": list(cls.losses), "description": f"the losses of task {name}; default "
                                                                       f"{cls.losses[0]}"}
    defs[f"axis.losses.{name}"] = _axis_of(_ref("losses", name))
    defs[f"task_args.{name}"] = _object({f.name: _ref("task", name, f.name) for f in dataclasses.fields(cls.Args)})
    metric = {"enum": [*TRAIN_METRICS, *cls.metrics]}
    return _when(_given("task", name), {"properties": {"task_args": _nullable(_ref("task_args", name)),
                                                       "success": {"properties": {"metric": metric}}}})


def _model_rule(name: str, cls, defs: dict) -> dict:
    defs[f"model_args.{name}"] = _object({f.name: _ref("model", name, f.name) for f in dataclasses.fields(cls.Args)})
    return _when(_given("model", name), {"properties": {"model_args": _nullable(_ref("model_args", name))}})


def _pair_rule(task: str, model: str, defs: dict) -> dict:
    """With `task: task` and `model: model`: the parameters that `fixed`, `grid`, `zip`, a search's
    space and `tune` may name, and their values."""
    owners = _pair_params(task, model)
    defs[f"fixed.{task}.{model}"] = _object({n: _param_ref(task, model, n, o) for n, o in owners.items()})
    defs[f"grid.{task}.{model}"] = _object({n: _param_ref(task, model, n, o, axis=True) for n, o in owners.items()})
    grid = _ref("grid", task, model)
    names = {"enum": list(owners)}
    return _when({"allOf": [_given("task", task), _given("model", model)]}, {"properties": {
        "fixed": _nullable(_ref("fixed", task, model)),
        "grid": _nullable(grid),
        "zip": {"anyOf": [grid, {"type": "array", "items": grid}, {"type": "null"}]},
        "search": {"properties": {"space": {"propertyNames": names}}},
        "tune": {"properties": {"param": names}},
    }})


def _per_value_rule(owner: str, registry: dict, defs: dict) -> dict:
    """With `owner` (task or model) as an axis: `owner`_args maps each value to its own arguments and
    the training arguments."""
    from paretolab.spec import TrainArgs

    for name, cls in registry.items():
        fields = {f.name: _ref(owner, name, f.name) for f in dataclasses.fields(cls.Args)}
        for f in dataclasses.fields(TrainArgs):
            fields[f.name] = _param_ref(name if owner == "task" else None, None, f.name, "train")
        defs[f"{owner}_value_args.{name}"] = _object(fields)
    per_value = _object({name: _ref(f"{owner}_value_args", name) for name in registry})
    return _when(_absent_or_null(owner), {"properties": {f"{owner}_args": _nullable(per_value)}})


# ---------------------------------------------------------------------------------------------
# the sections and the top-level keys


def _keyed(names, schemas: dict) -> dict:
    """`schemas` in the order of the parser's `names`, which they must match one for one."""
    assert set(names) == set(schemas), set(names) ^ set(schemas)  # a key the parser added needs its schema here
    return {k: schemas[k] for k in names}


def _at_least(low: float, exclusive: bool = False, high: float | None = None) -> dict:
    bound = {"exclusiveMinimum" if exclusive else "minimum": low} | ({"maximum": high} if high is not None else {})
    return {"anyOf": [{"type": "number", **bound}, _ref("number_text")]}


def _sections() -> dict:
    """The definitions of `eval`, `success`, `resources`, `search` and `tune`."""
    from paretolab.spec import EVAL_KEYS, EvalArgs, RESOURCE_KEYS, Success, SUCCESS_KEYS, TRAIN_METRICS
    from paretolab.spec_search import (DIRECTIONS, MAX_SAMPLER_SEED, PRUNERS, RANGE_KEYS, RESULT_METRICS, SAMPLERS,
                                       SEARCH_KEYS, TUNE_KEYS)
    from paretolab.spec_values import hints

    defaults = {f.name: f.default for cls in (EvalArgs, Success) for f in dataclasses.fields(cls)}
    success = {k: {**_value(hints(Success)[k]), "default": defaults[k]} for k in SUCCESS_KEYS}
    success["metric"] |= {"examples": ["test_error", "test_acc", *TRAIN_METRICS]}
    metric = {"type": "string", "examples": list(RESULT_METRICS)}
    space_range = _object(_keyed(RANGE_KEYS, {"low": _ref("number"), "high": _ref("number"), "log": {"type": "boolean"},
                                              "step": _ref("number")}), required=["low", "high"])
    objective = _object({d: metric for d in DIRECTIONS}, minProperties=1, maxProperties=1)
    return {
        "eval": _object({k: {**_ref("positive_integer"), "default": defaults[k]} for k in EVAL_KEYS}, type=["object", "null"]),
        "success": _object(success, type=["object", "null"]),
        "resources": _object(_keyed(RESOURCE_KEYS, {
            "cpu": {**_at_least(0, exclusive=True), "default": 1, "description": "CPU cores per worker"},
            "gpu": {**_at_least(0), "default": 0, "description": "GPUs per worker (0.25: four workers per GPU)"},
            "pack_size": {"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}], "default": "auto",
                          "description": "trials trained together per worker; auto: from the model's size"},
        }), type=["object", "null"]),
        "frontier_search": _object(_keyed(SEARCH_KEYS["frontier"], {
            "mode": {"const": "frontier"}, "axis": {"type": "string", "description": "the grid or zip axis to bisect"},
            "by": {"type": "array", "items": {"type": "string"}, "description": "the other axes: one boundary each"},
            "target_success": {**_at_least(0, exclusive=True, high=1), "default": 0.5},
            "seeds_per_probe": _ref("positive_integer"), "max_seeds": _ref("positive_integer"),
        }), required=["axis"]),
        "optuna_search": _object(_keyed(SEARCH_KEYS["optuna"], {
            "mode": {"const": "optuna"}, "sampler": {"enum": list(SAMPLERS), "default": SAMPLERS[0]},
            "n_trials": _ref("positive_integer"),
            "space": {"allOf": [_ref("names")], "type": "object",
                      "additionalProperties": {"anyOf": [_list_of(_ref("scalar")), space_range]}},
            "objectives": {"anyOf": [objective, _list_of(objective)]},
            "pruner": {"enum": [*PRUNERS, None]},
            "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SAMPLER_SEED, "default": 0},
        }), required=["n_trials", "space", "objectives"]),
        "search": {"type": ["object", "null"],
                   "properties": {"mode": {"enum": list(SEARCH_KEYS), "default": "optuna"}},
                   "if": {"type": "object", "properties": {"mode": {"const": "frontier"}}, "required": ["mode"]},
                   "then": _ref("frontier_search"),
                   "else": {"anyOf": [{"type": "null"}, _ref("optuna_search")]}},
        "tune": _object(_keyed(TUNE_KEYS, {
            "param": {"type": "string", "description": "the parameter tuned per cell"},
            "values": _list_of(_ref("scalar"), least=2),
            "select": {"type": "string", "pattern": r"^\s*(min|max)\s+\S+\s*$", "default": "min steps_to_success",
                       "examples": [f"{d} {m}" for d in ("min", "max") for m in RESULT_METRICS]},
            "seeds": _ref("positive_integer"),
        }), type=["object", "null"], required=["param", "values"]),
    }


def _top_properties(task_names: list[str], model_names: list[str]) -> dict:
    from paretolab.spec_values import MAX_SEED, MAX_SEED_COUNT

    function = {"type": ["string", "null"], "pattern": "^.+:.+$", "examples": ["train.py:main"]}
    schemas = {
        "sweep": {"type": "string", "pattern": NAME},
        "task": {"enum": task_names}, "model": {"enum": model_names},
        "task_args": _ref("names"), "model_args": _ref("names"),
        "trainable": function, "vectorized": function,
        "command": {"anyOf": [{"type": "string", "minLength": 1}, _list_of({"type": ["string", "number"]}),
                              {"type": "null"}]},
        "pack_by": {"type": ["array", "null"], "items": {"type": "string"}},
        "version": {"type": ["string", "number", "null"]},
        "timeout_s": {"anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]},
        "checkpoint_dir": {"type": ["string", "null"], "pattern": r"\S"},
        "keep_checkpoints": {"type": "boolean", "default": False},
        "grid": _ref("axes"),
        "zip": {"anyOf": [_ref("zip_group"), {"type": "array", "items": _ref("zip_group")}, {"type": "null"}]},
        "fixed": {"allOf": [_ref("names")], "additionalProperties": _ref("scalar")},
        "seeds": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": MAX_SEED_COUNT},
                            {**_list_of({"type": "integer", "minimum": 0, "maximum": MAX_SEED}), "uniqueItems": True}],
                  "default": 1},
        "max_steps": {"anyOf": [_ref("positive_integer"), {"type": "null"}]},
        "eval": _ref("eval"), "success": _ref("success"), "resources": _ref("resources"),
        "max_attempts": {**_ref("positive_integer"), "default": 3},
        "search": _ref("search"), "tune": _ref("tune"),
    }
    return {k: {**v, "description": HELP[k]} for k, v in schemas.items()}


if __name__ == "__main__":  # regenerate the shipped file
    SCHEMA_FILE.write_text(render(builtin_schema()), encoding="utf-8")
    print(f"wrote {SCHEMA_FILE}")

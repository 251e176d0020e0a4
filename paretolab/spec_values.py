"""A spec's values checked and coerced: each function returns the value in the type its key takes,
or raises a `SpecError` naming the file, the key, the bad value and what is allowed."""

from __future__ import annotations

import math
import types
import typing

from paretolab.errors import SpecError
from paretolab.orchestrator.sweep import Sweep, Value
from paretolab.tasks.registry import tasks
from paretolab.workers.models import models
from paretolab.workers.trial import TrainArgs


def positive_int(value, path, key) -> int:
    v = coerce(value, int, path, key)
    if v < 1:
        raise SpecError(f"{path}: {key}: expected an integer >= 1, got {value!r}")
    return v


def seed_value(value, path, key) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{path}: {key}: a seed is an integer >= 0, got {value!r}")
    return value


def mapping(raw, path, key) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: {key}: expected a mapping of names to values, got {raw!r}")
    for k in raw:
        if not isinstance(k, str):
            raise SpecError(f"{path}: {key}: keys must be names, got {k!r}")
    return raw


def no_unknown(raw: dict, allowed, path, prefix) -> None:
    for k in raw:
        if k not in allowed:
            raise SpecError(f"{path}: {prefix}{k}: unknown key; allowed: {', '.join(allowed)}")


def choice(value, registry: dict, path, key) -> str:
    if not isinstance(value, str) or value not in registry:
        raise SpecError(f"{path}: {key}: unknown {key} {value!r}; known: {', '.join(sorted(registry))}")
    return value


def known_parameter(name, owners: dict, path, key) -> None:
    if name not in owners:
        raise SpecError(f"{path}: {key}: unknown parameter {name!r}; known: {', '.join(sorted(owners))}")


def hints(cls) -> dict:
    return typing.get_type_hints(cls)


def type_of(task, model, name, owners):
    cls = {"task": tasks()[task].Args, "model": models()[model].Args, "train": TrainArgs}[owners[name]]
    return hints(cls)[name]


def field_type(sweep: Sweep, name, owners):
    return type_of(sweep.task, sweep.model, name, owners)


def base_type(ftype):
    args = [a for a in typing.get_args(ftype) if a is not type(None)]
    return args[0] if typing.get_origin(ftype) in (typing.Union, types.UnionType) and len(args) == 1 else ftype


def to_float(x) -> float:
    if isinstance(x, bool):
        raise ValueError
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        return float(x)  # YAML 1.1 reads `1e-3` as a string
    raise ValueError


def coerce(value, ftype, path, key) -> Value:
    origin, args = typing.get_origin(ftype), typing.get_args(ftype)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return coerce(value, base_type(ftype), path, key)
    if origin is typing.Literal:
        if value not in args:
            raise SpecError(f"{path}: {key}: {value!r} is not allowed; allowed: {', '.join(map(str, args))}")
        return value
    try:
        if ftype is bool and isinstance(value, bool):
            return value
        if ftype is int:
            f = to_float(value)
            if f.is_integer():
                return int(f)
        elif ftype is float:
            f = to_float(value)
            if math.isfinite(f):
                return f
        elif ftype is str and isinstance(value, str):
            return value
    except (ValueError, OverflowError):
        pass
    kind = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}.get(ftype, str(ftype))
    raise SpecError(f"{path}: {key}: expected {kind}, got {value!r}")

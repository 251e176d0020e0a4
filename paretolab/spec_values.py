"""A spec's values checked and coerced: each function returns the value in the type its key takes,
or raises a `SpecError` naming the file, the key, the bad value and what is allowed."""

from __future__ import annotations

import math
import types
import typing

from paretolab.errors import SpecError, clipped, shown
from paretolab.orchestrator.sweep import Sweep, Value
from paretolab.tasks.registry import tasks
from paretolab.workers.models import models
from paretolab.workers.trial import TrainArgs

MAX_NAME_CHARS = 100  # a key of a spec's mapping: a parameter's or a setting's name
MAX_SEED = 2**63 - 1  # the store's `seed` column is a Parquet int64 (the streams' derivation,
#                      tasks/seeding.py, hashes any integer)
MAX_SEED_COUNT = 1_000_000  # `seeds: N` is held as a tuple of N seeds; a million per grid point is past any
#                             luck analysis, and 10^20 (a typo) made an OverflowError


def positive_int(value, path, key) -> int:
    v = coerce(value, int, path, key)
    if v < 1:
        raise SpecError(f"{path}: {key}: expected an integer >= 1, got {shown(value)}")
    return v


def seed_value(value, path, key, most: int = MAX_SEED, most_text: str = "2**63-1") -> int:
    """A seed: an integer in 0..`most` (written `most_text` in the message)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise SpecError(f"{path}: {key}: a seed is an integer in 0..{most_text}, got {shown(value)}")
    return value


def mapping(raw, path, key) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: {key}: expected a mapping of names to values, got {shown(raw)}")
    for k in raw:
        if not isinstance(k, str) or len(k) > MAX_NAME_CHARS:  # a key is echoed in every message about its value
            raise SpecError(f"{path}: {key}: keys must be names (at most {MAX_NAME_CHARS} characters), got {shown(k)}")
    return raw


def no_unknown(raw: dict, allowed, path, prefix) -> None:
    for k in raw:
        if k not in allowed:
            raise SpecError(f"{path}: {prefix}{clipped(str(k), MAX_NAME_CHARS)}: unknown key; allowed: {', '.join(allowed)}")


def choice(value, registry: dict, path, key) -> str:
    if not isinstance(value, str) or value not in registry:
        raise SpecError(f"{path}: {key}: unknown {key} {shown(value)}; known: {', '.join(sorted(registry))}")
    return value


def known_parameter(name, owners: dict, path, key) -> None:
    if not isinstance(name, str) or name not in owners:
        raise SpecError(f"{path}: {key}: unknown parameter {shown(name)}; known: {', '.join(sorted(owners))}")


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
            raise SpecError(f"{path}: {key}: {shown(value)} is not allowed; allowed: {', '.join(map(str, args))}")
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
    raise SpecError(f"{path}: {key}: expected {kind}, got {shown(value)}")

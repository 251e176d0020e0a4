"""A spec's values checked and coerced: each function returns the value in the type its key takes,
or raises a `SpecError` naming the file, the key, the bad value and what is allowed."""

from __future__ import annotations

import math
import re
import types
import typing

from paretolab.vocabulary.errors import SpecError, clipped, shown
from paretolab.vocabulary.sweep import Sweep, Value
from paretolab.tasks.registry import tasks
from paretolab.models.registry import models
from paretolab.vocabulary.trial import TrainArgs

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
    if isinstance(owners, OpenParams) and name not in owners:  # any name but a result column's
        if name == "max_steps":
            raise SpecError(f"{path}: {key}: max_steps is a top-level key of the spec; set `max_steps: N` there")
        if isinstance(name, str) and name.isidentifier():
            raise SpecError(f"{path}: {key}: {shown(name)} is the name of a result column; rename the parameter")
        raise SpecError(f"{path}: {key}: a parameter's name is an identifier (letters, digits, _), got {shown(name)}")
    if not isinstance(name, str) or name not in owners:
        raise SpecError(f"{path}: {key}: unknown parameter {shown(name)}; known: {', '.join(sorted(owners))}")


def hints(cls) -> dict:
    return typing.get_type_hints(cls)


class OpenParams(dict):
    """The parameters of a sweep of the researcher's own code: any name that is not a result column
    (`vocabulary.schema.RESERVED`), mapped to the type its values were given in (`free_values`);
    `in` is true of every such name, set or not."""

    def __contains__(self, name) -> bool:
        from paretolab.vocabulary.schema import RESERVED

        return isinstance(name, str) and name.isidentifier() and name not in RESERVED and \
            name not in ("trainable", "max_steps")

    def __missing__(self, name):
        return object  # not set yet: any scalar


class UnionParams(dict):
    """The parameters of a sweep whose task or model is an axis: every parameter of any of its
    (task, model) pairs, mapped to its owner (task, model or train), with the type it has there."""

    def __init__(self, task_values, model_values):
        from paretolab.orchestrator.grid import parameters

        super().__init__()
        self.types: dict[str, object] = {}
        for t in task_values:
            for m in model_values:
                for name, owner in parameters(t, m).items():
                    if name not in self:
                        self[name] = owner
                        cls = {"task": tasks()[t].Args, "model": models()[m].Args, "train": TrainArgs}[owner]
                        self.types[name] = hints(cls)[name]


def type_of(task, model, name, owners):
    if isinstance(owners, OpenParams):
        return owners[name]
    if isinstance(owners, UnionParams):
        return owners.types[name]
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
    if ftype is object:  # a parameter of the researcher's own code: any scalar
        return free_values([value], path, key)[0]
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


# a number YAML 1.1 reads as a string: `1e-3`, `1.5E+2` (YAML 1.2, and Python, read them as floats)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def free_values(values: list, path, key) -> list:
    """The values of one parameter of the researcher's own code, in one type: integers, numbers
    (integers among floats become floats), strings, or true/false; null is allowed beside any.

    Raises:
        SpecError: a value that is not a scalar, a non-finite number, or values of mixed kinds.
    """
    out = []
    for v in values:
        if isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
            v = float(v)
        if v is not None and not isinstance(v, (bool, int, float, str)):
            raise SpecError(f"{path}: {key}: a parameter's value is a number, a string, true/false or null, "
                            f"got {shown(v)}")
        if isinstance(v, float) and not math.isfinite(v):
            raise SpecError(f"{path}: {key}: expected a finite number, got {shown(v)}")
        if isinstance(v, int) and not isinstance(v, bool) and not -2**63 <= v < 2**63:
            raise SpecError(f"{path}: {key}: an integer must fit in 64 bits, got {shown(v)}")
        out.append(v)
    kinds = {("number" if isinstance(v, (int, float)) and not isinstance(v, bool) else type(v).__name__)
             for v in out if v is not None}
    if len(kinds) > 1:
        raise SpecError(f"{path}: {key}: the values mix {' and '.join(sorted(kinds))} ({shown(values)}); "
                        "give one parameter values of one kind")
    if any(isinstance(v, float) for v in out):
        out = [float(v) if v is not None else None for v in out]
    return out


def free_type(values: list) -> type:
    """The type of values checked by `free_values` (`object` when all are null)."""
    for v in values:
        if v is not None:
            return type(v)
    return object

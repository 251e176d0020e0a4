"""How a conformance check fails: one exception type, raised whatever Python's `-O` says."""

from __future__ import annotations


class ConformanceError(AssertionError):
    """An implementation breaks the contract of its extension point; the message says where."""


def expect(condition: object, message: str) -> None:
    """Raise `ConformanceError(message)` unless `condition` holds (a plain `assert` vanishes under `-O`)."""
    if not condition:
        raise ConformanceError(message)


def registered(kind: str, item, known: dict):
    """The class of `item`: a name registered in `known` (a `kind` registry), or the class itself."""
    if isinstance(item, str):
        expect(item in known, f"unknown {kind} {item!r}; known: {', '.join(sorted(known))}")
        return known[item]
    return item


def as_args(cls, args=None):
    """`args` as an instance of `cls.Args`: a dict of its fields, an instance, or None for the defaults."""
    if args is None:
        return cls.Args()
    return cls.Args(**args) if isinstance(args, dict) else args

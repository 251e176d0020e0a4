"""How a conformance check fails: one exception type, raised whatever Python's `-O` says."""

from __future__ import annotations


class ConformanceError(AssertionError):
    """An implementation breaks the contract of its extension point; the message says where."""


def expect(condition: object, message: str) -> None:
    """Raise `ConformanceError(message)` unless `condition` holds (a plain `assert` vanishes under `-O`)."""
    if not condition:
        raise ConformanceError(message)

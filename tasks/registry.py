"""The task registry: built-ins listed explicitly, plus the `paretolab.tasks` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from paretolab.tasks.base import Task
from paretolab.tasks.sparse_parity import SparseParity

BUILTIN: dict[str, type[Task]] = {SparseParity.name: SparseParity}


@cache
def tasks() -> dict[str, type[Task]]:
    """Every known task by name: the built-ins, then those registered by installed packages (read once)."""
    found = dict(BUILTIN)
    for ep in entry_points(group="paretolab.tasks"):
        found.setdefault(ep.name, ep.load())
    return found

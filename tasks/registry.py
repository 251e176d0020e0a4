"""The task registry: built-ins listed explicitly, plus the `paretolab.tasks` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from paretolab.tasks.automata import Automaton
from paretolab.tasks.base import Task
from paretolab.tasks.flipflop import FlipFlop
from paretolab.tasks.lm import LanguageModel
from paretolab.tasks.relu_teacher import ReluTeacher
from paretolab.tasks.sparse_boolean import SparseBoolean
from paretolab.tasks.sparse_parity import SparseParity

GROUP = "paretolab.tasks"  # the entry-point group of third-party tasks

BUILTIN: dict[str, type[Task]] = {
    SparseParity.name: SparseParity,
    Automaton.name: Automaton,
    ReluTeacher.name: ReluTeacher,
    FlipFlop.name: FlipFlop,
    SparseBoolean.name: SparseBoolean,
    LanguageModel.name: LanguageModel,
}


@cache
def tasks() -> dict[str, type[Task]]:
    """Every known task by name: the built-ins, then those registered by installed packages (read once)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep.load())
    return found

"""Axis labels: a column's name in words, with its unit, where the built-in tasks and models declare it.

A cost reads in words (`steps to success`). A parameter of a sweep run with a task (built-in or a
plug-in: its trials have a `task` column) reads from `DECLARED` when it is one of the sweep's axes;
every other column, and every parameter of a sweep of one's own code (whose `lr` may be anything),
is labelled by its own name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from paretolab.analysis.cells import SweepInfo, columns

COST_LABELS = {"steps_to_success": "steps to success", "samples_to_success": "samples to success",
               "flops_to_success": "training FLOPs to success"}
# The parameters of the built-in tasks (tasks/) and models (workers/) with a meaning every task
# shares, as (words, unit); the docstrings of their Args classes define them. Names whose meaning
# depends on the task (`n`, `k`, `noise`) are left to their own name.
DECLARED = {
    "width": ("width", "hidden units"),
    "hidden": ("hidden size", "units"),
    "d_model": ("model width", "units"),
    "depth": ("depth", "layers"),
    "n_layers": ("layers", None),
    "n_heads": ("attention heads", None),
    "train_size": ("training-set size", "samples"),
    "batch_size": ("batch size", "samples"),
    "lr": ("learning rate", None),
    "weight_decay": ("weight decay", None),
    "length": ("sequence length", "tokens"),
    "context": ("context length", "tokens"),
    "max_steps": ("step budget", "steps"),
}


@dataclass(frozen=True)
class Labels:
    """Callable: the label of a column (`labels(name)`); `declared` holds the axes read from `DECLARED`."""

    declared: dict[str, str] = field(default_factory=dict)

    def __call__(self, name: str) -> str:
        return COST_LABELS.get(name) or self.declared.get(name) or name


def declared_label(name: str) -> str | None:
    """`words (unit)` of a parameter in `DECLARED`, None for any other name."""
    if name not in DECLARED:
        return None
    words, unit = DECLARED[name]
    return f"{words} ({unit})" if unit else words


def sweep_labels(con: duckdb.DuckDBPyConnection, info: SweepInfo) -> Labels:
    """The labels of the sweep behind `con`: declared ones for its axes when its trials ran a task."""
    if "task" not in columns(con, "trials"):
        return Labels()
    if not con.execute("SELECT EXISTS (SELECT 1 FROM trials WHERE task IS NOT NULL)").fetchall()[0][0]:
        return Labels()
    return Labels({a: lab for a in info.axes if (lab := declared_label(a))})

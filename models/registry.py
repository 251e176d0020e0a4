"""The model registry: built-ins listed explicitly, plus the `paretolab.models` entry-point group."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from paretolab.models.base import Model
from paretolab.models.lstm import LSTM
from paretolab.models.mlp import MLP, MLPArgs, PackedMLP  # noqa: F401 - re-exported
from paretolab.models.transformer import Transformer

GROUP = "paretolab.models"  # the entry-point group of third-party models

BUILTIN: dict[str, type[Model]] = {MLP.name: MLP, Transformer.name: Transformer, LSTM.name: LSTM}


@cache
def models() -> dict[str, type[Model]]:
    """Every known model by name: the built-ins, then those of the `paretolab.models` entry points (read once)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=GROUP):
        found.setdefault(ep.name, ep.load())
    return found

"""Models: small networks built from explicit weight tensors.

Weights are plain tensors (no `nn.Module`) so that a pack of trials can later stack them along a
leading axis. Every model draws its initialization from the generator it is given.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import ClassVar, Literal

import torch

from paretolab.tasks.base import IO


class Model(ABC):
    """A trainable function of a task's inputs.

    Contract: `__init__(args, io, g, device)` draws all weights from `g` (`io` is the task's
    `tasks.base.IO`); `params` lists the tensors the optimizer updates (leaf tensors with
    `requires_grad`); `forward(x)` maps a batch of inputs to outputs: `(B, input_dim)` to
    `(B, output_dim)` for `vector` tasks, token ids `(B, T)` to logits `(B, T, output_dim)` for
    `sequence` tasks. `accepts` lists the IO kinds the model takes. `Args` is a frozen dataclass
    with defaults and a `check(io)` method raising `ValueError` on bad values.
    """

    name: ClassVar[str]
    Args: ClassVar[type]
    accepts: ClassVar[tuple[str, ...]]
    params: list[torch.Tensor]

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for the batch `x`."""

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)


@dataclass(frozen=True)
class MLPArgs:
    """2-layer ReLU MLP. init: `dense` (PyTorch's default) or `sparse` with `sparsity` inputs per neuron."""

    width: int = 100
    init: Literal["dense", "sparse"] = "dense"
    sparsity: int | None = None

    def check(self, io: IO) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.init == "sparse" and self.sparsity is None:
            raise ValueError("init 'sparse' needs sparsity: the number of non-zero inputs per neuron")
        if self.sparsity is not None and not 1 <= self.sparsity <= io.input_dim:
            raise ValueError(f"sparsity must be between 1 and the input dimension {io.input_dim}, got {self.sparsity}")


class MLP(Model):
    """x -> W2 relu(W1 x + b1) + b2, the 2-layer network of the sparse-parity papers."""

    name: ClassVar[str] = "mlp"
    Args: ClassVar[type] = MLPArgs
    accepts: ClassVar[tuple[str, ...]] = ("vector",)

    def __init__(self, args: MLPArgs, io: IO, g: torch.Generator, device: str = "cpu"):
        w, n, output_dim = args.width, io.input_dim, io.output_dim
        # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
        # Sparse init keeps that law with fan_in = s on the s surviving inputs of each neuron
        # (Edelman et al. 2023, Sec. 4: "sparse initialization" of the first layer).
        fan_in = n if args.init == "dense" else args.sparsity
        W1 = _uniform((w, n), 1 / math.sqrt(fan_in), g, device)
        if args.init == "sparse":
            keep = torch.rand(w, n, generator=g, device=device).argsort(dim=1)[:, : args.sparsity]
            mask = torch.zeros(w, n, device=device).scatter_(1, keep, 1.0)
            W1 = W1 * mask
        b1 = _uniform((w,), 1 / math.sqrt(fan_in), g, device)
        W2 = _uniform((output_dim, w), 1 / math.sqrt(w), g, device)
        b2 = _uniform((output_dim,), 1 / math.sqrt(w), g, device)
        self.params = [p.requires_grad_() for p in (W1, b1, W2, b2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        W1, b1, W2, b2 = self.params
        return torch.relu(x @ W1.T + b1) @ W2.T + b2


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator, device: str) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2 - 1) * bound


BUILTIN: dict[str, type[Model]] = {MLP.name: MLP}


@cache
def models() -> dict[str, type[Model]]:
    """Every known model by name: the built-ins, then those of the `paretolab.models` entry points (read once)."""
    found = dict(BUILTIN)
    for ep in entry_points(group="paretolab.models"):
        found.setdefault(ep.name, ep.load())
    return found

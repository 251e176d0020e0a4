"""The 2-layer MLP of the sparse-parity papers, and its packed (stacked) form.

Weights are plain tensors (no `nn.Module`) so that a pack of trials can stack them along a
leading axis. Every model draws its initialization from the generator it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from paretolab.tasks.base import IO
from paretolab.workers.base import Model


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
    packable: ClassVar[bool] = True
    pack_free: ClassVar[tuple[str, ...]] = ("init", "sparsity")

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


    @staticmethod
    def stack(members: list[MLP]) -> PackedMLP:
        return PackedMLP(members)


class PackedMLP:
    """P MLPs of one width as stacked weights: W1 (P, w, n), b1 (P, w), W2 (P, o, w), b2 (P, o)."""

    def __init__(self, members: list[MLP]):
        self.params = [torch.stack([m.params[j].detach() for m in members]).requires_grad_() for j in range(4)]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs (P, B, o) of inputs X (P, B, n), member p on its own slice."""
        W1, b1, W2, b2 = self.params
        H = torch.relu(torch.baddbmm(b1.unsqueeze(1), X, W1.transpose(1, 2)))
        return torch.baddbmm(b2.unsqueeze(1), H, W2.transpose(1, 2))

    def member(self, i: int):
        """The forward function of member i alone."""
        W1, b1, W2, b2 = (p[i] for p in self.params)
        return lambda x: torch.relu(x @ W1.T + b1) @ W2.T + b2

    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`."""
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator, device: str) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2 - 1) * bound


# The other built-ins subclass `Model`, so they are imported once it exists.

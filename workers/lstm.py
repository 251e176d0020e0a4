"""An LSTM over token sequences: embedding, stacked `torch.nn.LSTM` layers, linear head.

The recurrent layers are `torch.nn.LSTM` modules, unlike the plain tensors of the other models,
so that they run on cuDNN's fused kernels; their weights are still drawn from the trial's
generator. The flip-flop baseline of Liu et al. 2023 ("Exposing Attention Glitches with
Flip-Flop Language Modeling") is 1 layer of width 128, the default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from paretolab.tasks.base import IO
from paretolab.workers.base import Model
from paretolab.workers.transformer import dropout


@dataclass(frozen=True)
class LSTMArgs:
    """n_layers: stacked LSTM layers; hidden: their width (also the embedding width); dropout:
    probability on every non-recurrent connection, in training only."""

    n_layers: int = 1
    hidden: int = 128
    dropout: float = 0.0

    def check(self, io: IO) -> None:
        if self.n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {self.n_layers}")
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class LSTM(Model):
    """Token ids `(B, T)` to logits `(B, T, output_dim)` through `n_layers` LSTM layers.

    Dropout follows Zaremba et al. 2014 ("Recurrent Neural Network Regularization"): on the
    non-recurrent connections only (embedding -> layer 1, between layers, last layer -> head), so it
    also regularizes a 1-layer model. Each layer is its own `nn.LSTM` so that the masks come from a
    generator seeded from `g` (`nn.LSTM`'s own dropout uses the global RNG). Dropout is active only
    while autograd records (`torch.is_grad_enabled()`), i.e. in training steps, not in evaluation.
    """

    name: ClassVar[str] = "lstm"
    Args: ClassVar[type] = LSTMArgs
    accepts: ClassVar[tuple[str, ...]] = ("sequence",)

    def __init__(self, args: LSTMArgs, io: IO, g: torch.Generator, device: str = "cpu"):
        h = args.hidden
        self.p = args.dropout
        # nn.Embedding's default init, N(0, 1).
        self.embedding = torch.randn(io.input_dim, h, generator=g, device=device)
        # Built on the meta device so that nn.LSTM's own initialization does not draw from the global
        # RNG, then filled like PyTorch's default: every weight and bias U(-1/sqrt(h), 1/sqrt(h)).
        self.layers = [torch.nn.LSTM(h, h, batch_first=True, device="meta").to_empty(device=device)
                       for _ in range(args.n_layers)]
        with torch.no_grad():
            for p in (p for layer in self.layers for p in layer.parameters()):
                p.copy_(_uniform(p.shape, 1 / math.sqrt(h), g, device))
        # nn.Linear's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias.
        self.W = _uniform((io.output_dim, h), 1 / math.sqrt(h), g, device)
        self.b = _uniform((io.output_dim,), 1 / math.sqrt(h), g, device)
        # Drawn last, and always, so that the weights do not depend on `dropout`.
        self.dropout_g = torch.Generator(device=device)
        self.dropout_g.manual_seed(int(torch.randint(2**62, (), generator=g, device=device)))
        self.embedding.requires_grad_()
        self.W.requires_grad_()
        self.b.requires_grad_()
        self.params = [self.embedding, *(p for layer in self.layers for p in layer.parameters()), self.W, self.b]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = dropout(self.embedding[x], self.p, self.dropout_g)
        for layer in self.layers:
            h = dropout(layer(h)[0], self.p, self.dropout_g)
        return h @ self.W.T + self.b


def _uniform(shape, bound: float, g: torch.Generator, device: str) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2 - 1) * bound

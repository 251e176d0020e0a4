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

from paretolab.tasks.lazy import F, torch

from paretolab.tasks.base import IO
from paretolab.models.base import Pack, PackableModel
from paretolab.models.transformer import dropout, dropout_generator


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


class LSTM(PackableModel):
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
        self.dropout_g = dropout_generator(g, device)
        self.embedding.requires_grad_()
        self.W.requires_grad_()
        self.b.requires_grad_()
        self.params = [self.embedding, *(p for layer in self.layers for p in layer.parameters()), self.W, self.b]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = dropout(self.embedding[x], self.p, self.dropout_g)
        for layer in self.layers:
            h = dropout(layer(h)[0], self.p, self.dropout_g)
        return h @ self.W.T + self.b

    @classmethod
    def param_count(cls, args: LSTMArgs, io: IO) -> int:
        h = args.hidden  # embedding; per layer W_ih, W_hh (4h x h) and two biases (4h); the head
        return io.input_dim * h + args.n_layers * (8 * h * h + 8 * h) + io.output_dim * h + io.output_dim

    @staticmethod
    def stack(members: list[LSTM]) -> PackedLSTM:
        return PackedLSTM(members)


class PackedLSTM(Pack):
    """P LSTMs of one shape as stacked weights (each of `LSTM.params` with a leading member axis).

    The embedding lookup and the head are batched over the members; the recurrent layers run member
    by member through `nn.LSTM`'s fused kernel on each member's slices of the stacked weights. On
    the 2-core CPU (one thread, batch 32, T = 63, forward and backward of one layer) the fused kernel
    per member beat a hand-written cell batched over the members with `baddbmm` at every size tried:
    hidden 16: 7.9 ms against 30 ms for 8 members, 75 ms against 206 ms for 64; hidden 128: 69 ms
    against 324 ms for 8 (measured). `torch.func.vmap` has no batching rule for `aten::lstm`. So a
    pack of LSTMs saves the per-step work around the recurrence (data, loss, optimizer, Python), not
    the recurrence itself; each member's recurrence rounds exactly as its solo run.
    """

    def __init__(self, members: list[LSTM]):
        self.template = members[0]
        n = len(members[0].params)
        self.params = [torch.stack([m.params[j].detach() for m in members]).requires_grad_() for j in range(n)]
        self.dropout_gs = [m.dropout_g for m in members]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Logits (P, B, T, o) of token ids X (P, B, T), member p on its own slice."""
        emb, *recurrent, W, b = self.params
        P, (V, H) = X.shape[0], emb.shape[1:]
        offsets = torch.arange(P, device=X.device).view(P, 1, 1) * V
        h = self._dropout(F.embedding(X + offsets, emb.reshape(P * V, H)))
        for j, layer in enumerate(self.template.layers):
            weights = zip(*(w.unbind(0) for w in recurrent[4 * j: 4 * j + 4]))
            h = self._dropout(torch.stack([_layer(layer, w, x) for w, x in zip(weights, h.unbind(0))]))
        B, T = X.shape[1:]
        return torch.baddbmm(b.unsqueeze(1), h.reshape(P, B * T, H), W.transpose(1, 2)).view(P, B, T, -1)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Each member's dropout on its slice, its masks drawn from its generator as its solo run draws them."""
        p = self.template.p
        if p == 0 or not torch.is_grad_enabled():
            return h
        keep = torch.stack([torch.rand(h.shape[1:], generator=g, device=h.device) >= p for g in self.dropout_gs])
        return h * keep / (1 - p)

    def member(self, i: int):
        """The forward function of member i alone."""
        emb, *recurrent, W, b = (p[i] for p in self.params)

        def forward(x: torch.Tensor) -> torch.Tensor:
            h = emb[x]
            for j, layer in enumerate(self.template.layers):
                h = _layer(layer, recurrent[4 * j: 4 * j + 4], h)
            return h @ W.T + b

        return forward

    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`."""
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]
        self.dropout_gs = [self.dropout_gs[i] for i in idx.tolist()]


def _layer(layer: torch.nn.LSTM, weights, x: torch.Tensor) -> torch.Tensor:
    """The outputs of `layer` on `x` with its 4 parameters replaced by `weights` (in `parameters()` order)."""
    names = [name for name, _ in layer.named_parameters()]
    return torch.func.functional_call(layer, dict(zip(names, weights)), (x,))[0]


def _uniform(shape, bound: float, g: torch.Generator, device: str) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2 - 1) * bound

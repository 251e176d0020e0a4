"""The contract every model implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch


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
    # Packing (workers/packed.py): a packable model has `stack(members) -> pack` whose pack has
    # `params`, `forward(X)` over stacked inputs, `member(i)` and `keep(idx)`, and optionally its
    # own backward (`forward_for_backward(X)`, then `backward(dloss/doutput)` sets the gradients;
    # the MLP's). `pack_free` names the arguments that may differ inside a pack.
    packable: ClassVar[bool] = False
    pack_free: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for the batch `x`."""

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    @classmethod
    def param_count(cls, args, io) -> int:
        """`n_params` of a model of `args` for a task of shape `io`, without building its weights
        (what `pack_size: auto` sizes packs by). This default builds the model on the meta device,
        whose arithmetic imports torch's compiler stack (about 1 s, once per process); built-ins
        override it with their closed form, which the conformance test checks."""
        import torch

        return cls(args, io, torch.Generator().manual_seed(0), "meta").n_params

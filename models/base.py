"""The contract every model implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from paretolab.tasks.lazy import torch


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
    # The arguments that may differ between the members of one pack (`PackableModel`).
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


class Pack(ABC):
    """P models of one shape trained as one (workers/packed.py): each of their `params` stacked
    along a new leading member axis.

    Contract: `params` lists the stacked leaf tensors the pack's optimizer updates; `forward(X)`
    maps stacked inputs `(P, B, ...)` to stacked outputs `(P, B, ...)`, member p on its own slice
    only, computing what each member's `forward` computes; `member(i)` is member i's forward
    function alone (what its evaluation uses); `keep(idx)` drops every member not in `idx`. A pack
    is owned by one worker's training loop and is not thread-safe.

    A pack may compute its own gradients (`own_backward`, the MLP's): then the loop calls
    `forward_for_backward(X)`, whose output is a leaf requiring grad, back-propagates the loss to
    it, and calls `backward(dloss/doutput)`, which sets every parameter's `.grad`.
    """

    params: list[torch.Tensor]
    own_backward: ClassVar[bool] = False

    @abstractmethod
    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Stacked outputs of the stacked inputs `X`."""

    @abstractmethod
    def member(self, i: int):
        """The forward function of member i alone."""

    @abstractmethod
    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`."""

    def forward_for_backward(self, X: torch.Tensor) -> torch.Tensor:
        """`forward(X)` keeping what `backward` needs (only with `own_backward`)."""
        raise NotImplementedError(f"{type(self).__name__} has no own backward")

    def backward(self, G: torch.Tensor) -> None:
        """Set the gradients from `G` = dloss/doutput of the last `forward_for_backward` (only with `own_backward`)."""
        raise NotImplementedError(f"{type(self).__name__} has no own backward")


class PackableModel(Model):
    """A model whose trials of one shape can train as one `Pack` (workers/packed.py).

    Contract, beyond `Model`'s: `stack(members)` builds the pack of `members` (models of equal
    arguments but for those named in `pack_free`) from copies of their weights, leaving the
    members unchanged; member i of the pack starts exactly as `members[i]`.
    """

    @staticmethod
    @abstractmethod
    def stack(members: list[Model]) -> Pack:
        """The pack of `members`."""

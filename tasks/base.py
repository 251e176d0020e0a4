"""The contract every task implements.

A task is what is learned: a data distribution with a hidden structure drawn from the trial's
seed, a held-out test set, the losses it supports and the metrics it reports. A `Task` object is
owned by one trial in one worker and is not shared between threads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class IO:
    """The shape of a task's data, which decides the models that fit it.

    `vector`: inputs are float vectors of width `input_dim`, outputs `output_dim` scores.
    `sequence`: inputs are token ids below `input_dim` (the vocabulary) of length up to `length`;
    outputs are `output_dim` class scores at every position.
    """

    kind: Literal["vector", "sequence"]
    input_dim: int
    output_dim: int
    length: int | None = None


@dataclass(frozen=True)
class PackedDraws:
    """A pack's members' training batches as one draw per member and one computation for all
    (`Task.packed_draws`); the pack (`workers.prefetch`) owns the drawn values and may draw
    several steps ahead.

    `draw(member, out)` fills `out` `(K * B, *row)`, of type `dtype`, from the member's own data
    stream with exactly what its next K `train_batch(B)` calls would draw, for any K (torch's CPU
    generators give one draw of K*B values exactly as K draws of B; on other devices the pack
    draws one step at a time). `batches(raw)` turns the members' stacked draws `(P, B, *row)` of one
    step into their stacked batches `(X, Y)`, member i's exactly its `train_batch(B)`. The pack
    draws on the members' `device`.
    """

    row: tuple[int, ...]
    dtype: torch.dtype
    draw: Callable[[Task, torch.Tensor], object]
    batches: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Task(ABC):
    """One trial's data source.

    Contract:
      - `__init__(args, seed, device)` draws every random structure (e.g. the parity support) and
        the test set from `seed` alone, through its own `torch.Generator`s, so the same seed gives
        the same task on every machine and in every process.
      - `train_batch(batch_size)` returns the next `(x, y)` of the training stream; calls are
        deterministic given the seed and the sequence of batch sizes.
      - `error(out, y)` is the batch error the training loop averages into `train_error`.
      - `evaluate(model)` returns the test metrics (names in `metrics`) as Python floats and never
        changes the training stream.
    Subclasses set `name`, `Args` (a frozen dataclass with defaults and a `check()` method raising
    `ValueError` on bad combinations), `losses` (the `loss` values they accept) and `metrics`.
    """

    name: ClassVar[str]
    Args: ClassVar[type]
    losses: ClassVar[tuple[str, ...]]
    metrics: ClassVar[tuple[str, ...]]
    # Arguments that may differ between the members of one pack (see workers/packed.py).
    pack_free: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    @abstractmethod
    def io(args) -> IO:
        """The data shape of this task with arguments `args` (no torch needed)."""

    @abstractmethod
    def train_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training minibatch `(x, y)`."""

    @abstractmethod
    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        """Mean loss of outputs `out` against labels `y`; `kind` is one of `losses`."""

    @abstractmethod
    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Fraction of wrong predictions in a batch, as a 0-d tensor (NaN outputs count as wrong)."""

    @classmethod
    def packed_draws(cls, members: list[Task]) -> PackedDraws | None:
        """How the training batches of `members` (a pack's, in order) are drawn together, or None
        (this default): the pack then calls each member's `train_batch` and stacks the results.
        For any subset of members for which it is not None, it is not None with the same `row`
        and `dtype` (a pack keeps what its members drew ahead when finished members leave)."""
        return None

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        """Per-member mean losses `(P,)` of stacked outputs `(P, B, ...)` and labels `(P, B, ...)`.

        Must equal `loss` applied to each member; it may not depend on this object's own state.
        Tasks override it with a vectorized version; this default loops over the members."""
        import torch

        return torch.stack([self.loss(out[i], y[i], kind) for i in range(out.shape[0])])

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-member batch errors `(P,)`, as `error` on each member."""
        import torch

        return torch.stack([self.error(out[i], y[i]) for i in range(out.shape[0])])

    @abstractmethod
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        """Test metrics of the model computed by `forward(x) -> out`, with loss `kind`."""

"""Sparse Boolean functions of a token sequence: the label is f of k hidden positions out of T.

The task of "Inductive Biases and Variable Creation in Self-Attention Mechanisms" (Edelman, Goel,
Kakade, Zhang, 2022): a bounded-norm attention layer represents a k-sparse function of T tokens with
a sample complexity that grows only with log T, so sweeping T shows whether a model "creates
variables" (attends to the k positions) or pays for the whole sequence.

Tokens are drawn uniformly from a vocabulary of V (even) ids; token t carries the bit t mod 2, so
V = 2 is a plain bit string and a larger V adds token identities that do not change the label. The
k positions come from the seed. The model is a sequence model (causal, so only the last position
has seen every token): its logits at the LAST position are the two class scores, and the outputs
at the other positions are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from paretolab.tasks.lazy import F, no_grad, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO
from paretolab.tasks.sampled import SampledTask
from paretolab.tasks.seeding import hidden_subset

FUNCTIONS = ("parity", "and", "or", "majority")
EVAL_TOKENS = 2**16  # test sequences go through the model in chunks of about this many tokens


@dataclass(frozen=True)
class SparseBooleanArgs:
    """Arguments of a sparse Boolean function.

    length: tokens per sequence T. k: number of relevant positions (1 <= k <= T). function: parity
    (XOR), and, or, or majority (k odd) of their bits. vocab: vocabulary size V (even; a token's bit
    is its id mod 2). train_size: fixed training-set size, or None for a fresh batch every step.
    Note that `and` and `or` are unbalanced: a constant prediction errs on 2^-k of the inputs.
    """

    length: int = 32
    k: int = 3
    function: Literal["parity", "and", "or", "majority"] = "parity"
    vocab: int = 2
    train_size: int | None = None

    def check(self) -> None:
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if not 1 <= self.k <= self.length:
            raise ValueError(f"k must be between 1 and length={self.length}, got {self.k}")
        if self.function not in FUNCTIONS:
            raise ValueError(f"unknown function {shown(self.function)}; known: {', '.join(FUNCTIONS)}")
        if self.function == "majority" and self.k % 2 == 0:
            raise ValueError(f"majority needs an odd k (no ties), got k={self.k}")
        if self.vocab < 2 or self.vocab % 2:
            raise ValueError(f"vocab must be even and >= 2 (a token's bit is its id mod 2), got {self.vocab}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null (online), got {self.train_size}")


def label(bits: torch.Tensor, function: str) -> torch.Tensor:
    """The labels (int64, 0 or 1) of the rows of `bits` (`(m, k)`, 0/1) under `function`."""
    s = bits.long().sum(dim=1)
    k = bits.shape[1]
    if function == "parity":
        return s % 2
    if function == "and":
        return (s == k).long()
    if function == "or":
        return (s > 0).long()
    return (2 * s > k).long()


class SparseBoolean(SampledTask):
    """A k-sparse Boolean function of T tokens; `x` is `(B, T)` token ids, `y` the `(B,)` labels."""

    name: ClassVar[str] = "sparse_boolean"
    Args: ClassVar[type] = SparseBooleanArgs
    losses: ClassVar[tuple[str, ...]] = ("cross_entropy",)
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "test_error", "test_acc")
    pack_free: ClassVar[tuple[str, ...]] = ("train_size",)

    def __init__(self, args: SparseBooleanArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args = args
        self.device = device
        self.support = hidden_subset(seed, args.length, args.k, device)
        self._init_streams(seed, test_size, device)

    @staticmethod
    def io(args: SparseBooleanArgs) -> IO:
        return IO("sequence", input_dim=args.vocab, output_dim=2, length=args.length)

    def _sample(self, m: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randint(0, self.args.vocab, (m, self.args.length), generator=g, device=self.device)
        return x, label(x[:, self.support] % 2, self.args.function)

    def _draw(self, m: int, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sample(m, g)

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return F.cross_entropy(out[:, -1], y)

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out[:, -1], y).float().mean()

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        """Per-member `loss` of outputs `(P, B, T, 2)` and labels `(P, B)`: the last position's."""
        return F.cross_entropy(out[:, :, -1].flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(dim=1)

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out[:, :, -1], y).float().mean(dim=1)

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        chunk = max(1, EVAL_TOKENS // self.args.length)
        out = torch.cat([forward(x)[:, -1:] for x in self._test_x.split(chunk)])
        error = float(self.error(out, self._test_y))
        return {"test_loss": float(self.loss(out, self._test_y, kind)), "test_error": error, "test_acc": 1.0 - error}


def _wrong(last: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Wrong predictions of the last-position scores `last` (`(..., 2)`). A NaN score wins argmax;
    counting non-finite outputs as wrong keeps NaN from ever being right."""
    return (last.argmax(dim=-1) != y) | ~torch.isfinite(last).all(dim=-1)

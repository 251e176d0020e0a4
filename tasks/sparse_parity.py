"""(n, k)-sparse parity: inputs uniform on {-1, +1}^n, label = product of k hidden coordinates.

The task of "Hidden Progress in Deep Learning" (Barak et al., 2022) and "Pareto Frontiers in
Neural Feature Learning" (Edelman et al., 2023). `train_size=None` is the online setting (a fresh
batch every step); an integer is the offline setting (one fixed training set, minibatches sampled
from it with replacement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from paretolab.tasks.lazy import no_grad, torch

from paretolab.tasks.base import IO, PackedDraws
from paretolab.tasks.sampled import SampledTask
from paretolab.tasks.seeding import hidden_subset


@dataclass(frozen=True)
class SparseParityArgs:
    """Arguments of sparse parity.

    n: input dimension; k: parity degree (1 <= k <= n); train_size: fixed training-set size, or
    None for online; noise: probability that a training label is flipped (test labels are clean).
    """

    n: int = 50
    k: int = 3
    train_size: int | None = None
    noise: float = 0.0

    def check(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if not 1 <= self.k <= self.n:
            raise ValueError(f"k must be between 1 and n={self.n}, got {self.k}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null (online), got {self.train_size}")
        if not 0.0 <= self.noise < 0.5:
            raise ValueError(f"noise must be in [0, 0.5), got {self.noise}")


class SparseParity(SampledTask):
    """Sparse parity with ±1 labels; the model outputs one score whose sign is the prediction."""

    name: ClassVar[str] = "sparse_parity"
    Args: ClassVar[type] = SparseParityArgs
    losses: ClassVar[tuple[str, ...]] = ("hinge", "logistic", "square")
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "test_error", "test_acc")
    pack_free: ClassVar[tuple[str, ...]] = ("train_size", "noise")

    def __init__(self, args: SparseParityArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args = args
        self.device = device
        self.support = hidden_subset(seed, args.n, args.k, device)
        self._init_streams(seed, test_size, device)

    @staticmethod
    def io(args: SparseParityArgs) -> IO:
        return IO("vector", args.n, 1)

    def _sample(self, m: int, g: torch.Generator, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = signs(random_bytes(g, (m, byte_count(self.args.n)), self.device), self.args.n).contiguous()
        y = x[:, self.support].prod(dim=1)
        if noise > 0:
            flip = torch.rand(m, generator=g, device=self.device) < noise
            y = torch.where(flip, -y, y)
        return x, y

    def _draw(self, m: int, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sample(m, g, self.args.noise if train else 0.0)

    @classmethod
    def packed_draws(cls, members: list[SparseParity]) -> PackedDraws | None:
        """Offline members: each draws its indices from its own generator (as `train_batch` does),
        then one gather over their concatenated training sets. Online members without label noise:
        each draws its input bytes, then one gather computes every label. Otherwise None."""
        if cls.train_batch is not SampledTask.train_batch or cls._draw is not SparseParity._draw:  # a subclass with its own stream
            return None
        offline = all(m.args.train_size is not None for m in members)
        online = all(m.args.train_size is None and m.args.noise == 0 for m in members)
        size = sum(m.args.train_size or 0 for m in members) * members[0].args.n
        if offline and size <= PACKED_GATHER_FLOATS:
            return _offline_draws(members)
        if online:
            return _online_draws(members)
        return None

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return _losses(out.reshape(-1), y, kind).mean()

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return _losses(out.reshape(y.shape), y, kind).mean(dim=-1)

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (~(out.reshape(y.shape) * y > 0)).float().mean(dim=-1)

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # `not > 0` rather than `<= 0`: a NaN output is a wrong prediction, never a right one.
        return (~(out.reshape(-1) * y > 0)).float().mean()

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        out = forward(self._test_x).reshape(-1)
        error = float(self.error(out, self._test_y))
        return {
            "test_loss": float(self.loss(out, self._test_y, kind)),
            "test_error": error,
            "test_acc": 1.0 - error,
        }


# A pack of offline members gathers from one copy of all their training sets, up to this many
# floats (256 MB); larger packs draw member by member rather than double the memory.
PACKED_GATHER_FLOATS = 64 * 2**20


def _offline_draws(members: list[SparseParity]) -> PackedDraws:
    X = torch.cat([m._train_x for m in members])
    Y = torch.cat([m._train_y for m in members])
    sizes = [m.args.train_size for m in members]
    offsets = torch.tensor([0] + sizes[:-1], device=X.device).cumsum(0).unsqueeze(1)

    def draw(m: SparseParity, out: torch.Tensor) -> None:
        torch.randint(0, m.args.train_size, out.shape, generator=m._data, out=out)

    def batches(raw: torch.Tensor):
        idx = raw + offsets
        return X[idx], Y[idx]

    return PackedDraws((), torch.long, draw, batches)


def _online_draws(members: list[SparseParity]) -> PackedDraws:
    supports = torch.stack([m.support for m in members]).unsqueeze(1)  # (P, 1, k)
    n = members[0].args.n

    def batches(raw: torch.Tensor):
        X = signs(raw, n)  # a step's bytes at a time: the inputs stay in cache for the forward
        return X, X.gather(2, supports.expand(-1, raw.shape[1], -1)).prod(dim=2)

    return PackedDraws((byte_count(n),), torch.uint8, lambda m, out: random_bytes(m._data, out=out), batches)


def byte_count(n: int) -> int:
    """Random bytes per example of `n` inputs: one per 8 inputs."""
    return (n + 7) // 8


def random_bytes(g: torch.Generator, shape: tuple[int, ...] = (), device: str = "cpu", out=None) -> torch.Tensor:
    """Uniform random bytes from `g` (into `out` if given), one generator draw each."""
    if out is not None:
        return torch.randint(0, 256, out.shape, generator=g, out=out)
    return torch.randint(0, 256, shape, generator=g, device=device, dtype=torch.uint8)


def signs(raw: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform ±1 inputs `(..., n)` from random bytes `(..., byte_count(n))`: bit i of byte j is
    input 8j + i (+1 where set), read through a 256 x 8 table in one pass; a view when `n` is not a
    multiple of 8. Eight inputs per draw rather than one made drawing a 100-member pack's inputs
    about 4x faster (0.48 s to 0.11 s of a 2.6 s pack, profiled; it was the second cost after
    backward)."""
    table = _SIGN_TABLES.get(raw.device)
    if table is None:
        bits = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        table = _SIGN_TABLES[raw.device] = (bits * 2 - 1).float().to(raw.device)
    x = table.index_select(0, raw.reshape(-1).long()).view(*raw.shape[:-1], raw.shape[-1] * 8)
    return x if x.shape[-1] == n else x[..., :n]


_SIGN_TABLES: dict[torch.device, torch.Tensor] = {}


def _losses(out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-example losses of scores `out` against ±1 labels `y` (same shape)."""
    if kind == "hinge":
        return torch.relu(1 - out * y)
    if kind == "logistic":
        return torch.nn.functional.softplus(-out * y)
    return (out - y) ** 2

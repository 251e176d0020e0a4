"""Narrow one-hidden-layer ReLU teacher: x ~ N(0, I_d), y = sum_i lambda_i ReLU(<w_i, x>), k units.

The setting of "Learning Narrow One-Hidden-Layer ReLU Networks" (Chen, Dou, Goel, Klivans, Meka,
COLT 2023): k << d unit-norm hidden directions w_i and real output weights lambda_i, learned from
Gaussian inputs with the square loss. The teacher (w, lambda) is drawn from the trial seed.

Error is relative: mean squared error divided by the variance of the labels (1 - R^2), so 0 is a
perfect student and 1 is no better than predicting the mean. `test_error` and `test_rel_mse` are
the same number: `test_error` so that the default success criterion (`test_error <= 0.1`, 90% of
the label variance explained) means something, `test_rel_mse` to name it in papers' terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from paretolab.tasks.lazy import no_grad, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO
from paretolab.tasks.sampled import SampledTask
from paretolab.tasks.seeding import generator


@dataclass(frozen=True)
class ReluTeacherArgs:
    """Arguments of the ReLU teacher.

    d: input dimension; k: number of teacher units; orthogonal: orthonormal w_i (needs k <= d),
    otherwise independent uniformly random unit vectors; coefficients: the output weights lambda_i,
    `ones` (all 1), `signs` (independent uniform ±1) or `random` (uniform sign times a magnitude
    uniform in [0.5, 1.5]); noise: standard deviation of Gaussian noise added to training labels
    (test labels are clean); train_size: fixed training-set size, or None for online.
    """

    d: int = 16
    k: int = 4
    orthogonal: bool = True
    coefficients: Literal["ones", "signs", "random"] = "ones"
    noise: float = 0.0
    train_size: int | None = None

    def check(self) -> None:
        if self.d < 1:
            raise ValueError(f"d must be >= 1, got {self.d}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.orthogonal and self.k > self.d:
            raise ValueError(f"orthogonal teacher units need k <= d={self.d}, got k={self.k}; set orthogonal: false")
        if self.coefficients not in ("ones", "signs", "random"):
            raise ValueError(f"coefficients must be one of ones, signs, random, got {shown(self.coefficients)}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null (online), got {self.train_size}")


def teacher(args: ReluTeacherArgs, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher of `seed`: unit directions `W` `(k, d)` and output weights `lam` `(k,)`, on CPU in float32."""
    g = generator(seed, "teacher")
    G = torch.randn((args.d, args.k), generator=g, dtype=torch.float64)
    if args.orthogonal:
        Q, R = torch.linalg.qr(G)
        W = (Q * torch.sign(torch.diagonal(R))).T  # sign fix makes Q Haar-distributed (Mezzadri 2007)
    else:
        W = (G / G.norm(dim=0)).T
    lam = torch.ones(args.k, dtype=torch.float64)
    if args.coefficients != "ones":
        lam = torch.randint(0, 2, (args.k,), generator=g).double() * 2 - 1
    if args.coefficients == "random":
        lam = lam * (0.5 + torch.rand(args.k, generator=g, dtype=torch.float64))
    return W.float(), lam.float()


class ReluTeacher(SampledTask):
    """Regression on the teacher's output; the model outputs one number.

    Metrics: test_loss (MSE on clean test labels), test_rel_mse (MSE / Var(y) on the test set) and
    test_error (the same as test_rel_mse). `error` (train_error) is the relative MSE of the batch:
    its MSE over its own label variance, so it needs batch_size >= 2.
    """

    name: ClassVar[str] = "relu_teacher"
    Args: ClassVar[type] = ReluTeacherArgs
    losses: ClassVar[tuple[str, ...]] = ("square",)
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "test_error", "test_rel_mse")
    pack_free: ClassVar[tuple[str, ...]] = ("train_size", "noise")

    def __init__(self, args: ReluTeacherArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args = args
        self.device = device
        W, lam = teacher(args, seed)
        self.W, self.lam = W.to(device), lam.to(device)
        self._init_streams(seed, test_size, device)

    @staticmethod
    def io(args: ReluTeacherArgs) -> IO:
        return IO("vector", args.d, 1)

    def _sample(self, m: int, g: torch.Generator, noise: float) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn((m, self.args.d), generator=g, device=self.device)
        y = torch.relu(x @ self.W.T) @ self.lam
        if noise > 0:
            y = y + noise * torch.randn(m, generator=g, device=self.device)
        return x, y

    def _draw(self, m: int, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sample(m, g, self.args.noise if train else 0.0)

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return ((out.reshape(-1) - y) ** 2).mean()

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return ((out.reshape(y.shape) - y) ** 2).mean(dim=-1)

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return relative_mse(out.reshape(-1), y)

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return relative_mse(out.reshape(y.shape), y)

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        out = forward(self._test_x).reshape(-1)
        rel = float(relative_mse(out, self._test_y))
        return {"test_loss": float(self.loss(out, self._test_y, kind)), "test_error": rel, "test_rel_mse": rel}


def relative_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MSE of `out` over the (population) variance of `y`, along the last axis.

    Raises:
        ValueError: fewer than 2 labels, whose variance is 0 (a batch_size of 1).
    """
    if y.shape[-1] < 2:
        raise ValueError(f"relu_teacher's relative error needs batches of at least 2 examples, got {y.shape[-1]}")
    return ((out - y) ** 2).mean(dim=-1) / y.var(dim=-1, correction=0)

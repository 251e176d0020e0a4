"""The ReLU MLP of the sparse-parity papers (2 layers by default, deeper on request), and its
packed (stacked) form.

Weights are plain tensors (no `nn.Module`) so that a pack of trials can stack them along a
leading axis. Every model draws its initialization from the generator it is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from paretolab.tasks.lazy import no_grad, torch

from paretolab.tasks.base import IO
from paretolab.models.base import Pack, PackableModel


@dataclass(frozen=True)
class MLPArgs:
    """ReLU MLP of `depth` weight layers (2: one hidden layer, the sparse-parity papers' network),
    every hidden layer `width` wide. init: `dense` (PyTorch's default) or `sparse` with `sparsity`
    inputs per first-layer neuron."""

    width: int = 100
    init: Literal["dense", "sparse"] = "dense"
    sparsity: int | None = None
    depth: int = 2

    def check(self, io: IO) -> None:
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2 (weight layers: 2 is one hidden layer), got {self.depth}")
        if self.init == "sparse" and self.sparsity is None:
            raise ValueError("init 'sparse' needs sparsity: the number of non-zero inputs per neuron")
        if self.sparsity is not None and not 1 <= self.sparsity <= io.input_dim:
            raise ValueError(f"sparsity must be between 1 and the input dimension {io.input_dim}, got {self.sparsity}")


class MLP(PackableModel):
    """x -> W_d relu(... relu(W1 x + b1) ...) + b_d with `depth` = d weight layers.

    `params` is [W1, b1, W2, b2, ..., W_d, b_d], drawn from the generator in that order.
    """

    name: ClassVar[str] = "mlp"
    Args: ClassVar[type] = MLPArgs
    accepts: ClassVar[tuple[str, ...]] = ("vector",)
    pack_free: ClassVar[tuple[str, ...]] = ("init", "sparsity")

    def __init__(self, args: MLPArgs, io: IO, g: torch.Generator, device: str = "cpu"):
        w, n, output_dim = args.width, io.input_dim, io.output_dim
        # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
        # Sparse init keeps that law with fan_in = s on the s surviving inputs of each neuron
        # (Edelman et al. 2023, Sec. 4: "sparse initialization" of the first layer); the layers
        # above it are dense.
        fan_in = n if args.init == "dense" else args.sparsity
        W1 = _uniform((w, n), 1 / math.sqrt(fan_in), g, device)
        if args.init == "sparse":
            keep = torch.rand(w, n, generator=g, device=device).argsort(dim=1)[:, : args.sparsity]
            mask = torch.zeros(w, n, device=device).scatter_(1, keep, 1.0)
            W1 = W1 * mask
        params = [W1, _uniform((w,), 1 / math.sqrt(fan_in), g, device)]
        for out_dim in [w] * (args.depth - 2) + [output_dim]:
            params += [_uniform((out_dim, w), 1 / math.sqrt(w), g, device),
                       _uniform((out_dim,), 1 / math.sqrt(w), g, device)]
        self.params = [p.requires_grad_() for p in params]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _forward(self.params, x)

    @classmethod
    def param_count(cls, args: MLPArgs, io: IO) -> int:
        w, n, o = args.width, io.input_dim, io.output_dim
        return (n * w + w) + (args.depth - 2) * (w * w + w) + (w * o + o)

    @staticmethod
    def stack(members: list[MLP]) -> PackedMLP:
        return PackedMLP(members)


class PackedMLP(Pack):
    """P MLPs of one width and depth as stacked weights: each `params[j]` of the members stacked
    along a new leading axis, e.g. W1 (P, w, n), b1 (P, w), ..., W_d (P, o, w), b_d (P, o)."""

    own_backward: ClassVar[bool] = True

    def __init__(self, members: list[MLP]):
        n = len(members[0].params)
        self.params = [torch.stack([m.params[j].detach() for m in members]).requires_grad_() for j in range(n)]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Outputs (P, B, o) of inputs X (P, B, n), member p on its own slice: one baddbmm per layer."""
        return self._layers(X, [])

    def forward_for_backward(self, X: torch.Tensor) -> torch.Tensor:
        """`forward(X)` outside autograd, keeping the activations that `backward` needs; the output
        is a leaf that requires grad, so a loss of it back-propagates to it alone."""
        self._inputs = []
        with torch.no_grad():
            out = self._layers(X, self._inputs)
        return out.requires_grad_()

    def _layers(self, X: torch.Tensor, inputs: list[torch.Tensor]) -> torch.Tensor:
        """The forward pass; each layer's input is appended to `inputs`."""
        H = X
        for j in range(0, len(self.params) - 2, 2):
            inputs.append(H)
            W, b = self.params[j], self.params[j + 1]
            H = torch.relu(torch.baddbmm(b.unsqueeze(1), H, W.transpose(1, 2)))
        inputs.append(H)
        W, b = self.params[-2:]
        return torch.baddbmm(b.unsqueeze(1), H, W.transpose(1, 2))

    @no_grad
    def backward(self, G: torch.Tensor) -> None:
        """Set every parameter's `.grad` from `G` = dloss/doutput `(P, B, o)` of the last
        `forward_for_backward`: the gradients autograd computes, up to rounding.

        Written out because autograd's backward of these small batched layers cost twice their
        forward (benchmarks/vs_ray_tune.py's 100-member packs, profiled: 0.47 of 1.3 ms a step):
        it forms dloss/dhidden as a batched matmul of inner dimension 1 (an outer product) and runs
        the ReLU's backward over strided gradients; here the outer product is a broadcast multiply
        and every gradient is contiguous. A fifth less time per pack step on the 2-core CPU."""
        inputs, self._inputs = self._inputs, []
        for j in range(len(self.params) - 2, -1, -2):
            W, b, H = self.params[j], self.params[j + 1], inputs[j // 2]
            W.grad = torch.bmm(G.transpose(1, 2), H)
            b.grad = G.sum(dim=1)
            if j:  # back through layer j's input H = relu(Z): zero where H is 0
                G = G * W if W.shape[1] == 1 else torch.bmm(G, W)
                G = torch.ops.aten.threshold_backward(G, H, 0)

    def member(self, i: int):
        """The forward function of member i alone."""
        params = [p[i] for p in self.params]
        return lambda x: _forward(params, x)

    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`."""
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]


def _forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The MLP of weights `params` = [W1, b1, ..., W_d, b_d] on a batch `x` (B, n)."""
    h = x
    for j in range(0, len(params) - 2, 2):
        h = torch.relu(h @ params[j].T + params[j + 1])
    return h @ params[-2].T + params[-1]


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator, device: str) -> torch.Tensor:
    return (torch.rand(shape, generator=g, device=device) * 2 - 1) * bound


# The other built-ins subclass `Model`, so they are imported once it exists.

"""A GPT-style causal Transformer over token sequences, built from explicit weight tensors.

The layout is nanoGPT's `model.py` (karpathy/nanoGPT), which is GPT-2's: token (and position)
embeddings, `n_layers` pre-LayerNorm blocks of causal self-attention and a GELU MLP, a final
LayerNorm and a bias-free linear head. The default size (6 layers, width 512, 8 heads: about 19M
parameters) is the flip-flop language-modeling model of Liu et al. 2023, "Exposing Attention
Glitches with Flip-Flop Language Modeling".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from paretolab.tasks.lazy import F, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO
from paretolab.models.base import Pack, PackableModel

# GPT-2 initialization (Radford et al. 2019, Sec. 2.3; nanoGPT `GPT._init_weights`): weights
# N(0, 0.02), biases 0, LayerNorm gain 1; the projections that write into the residual stream
# are scaled down by 1/sqrt(2 * n_layers), one factor per residual addition, so that the
# stream's variance does not grow with depth.
INIT_STD = 0.02


@dataclass(frozen=True)
class TransformerArgs:
    """Size and regularization of the causal Transformer.

    n_layers: blocks; d_model: residual width; n_heads: attention heads (dividing d_model);
    mlp_ratio: MLP hidden width as a multiple of d_model; pos_emb: `learned` position embeddings
    (needs the task's sequence length), fixed `sinusoidal` ones (Vaswani et al. 2017) or `none`
    (causal attention alone can infer position); dropout: probability on the embeddings and on each
    residual branch, in training only; tie_embeddings: the head reuses the token embedding (needs
    as many output classes as input tokens).
    """

    n_layers: int = 6
    d_model: int = 512
    n_heads: int = 8
    mlp_ratio: int = 4
    pos_emb: Literal["learned", "sinusoidal", "none"] = "learned"
    dropout: float = 0.0
    tie_embeddings: bool = False

    def check(self, io: IO) -> None:
        for name in ("n_layers", "d_model", "n_heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model must be a multiple of n_heads={self.n_heads}, got {self.d_model}")
        if self.pos_emb not in ("learned", "sinusoidal", "none"):
            raise ValueError(f"pos_emb must be one of learned, sinusoidal, none; got {shown(self.pos_emb)}")
        if self.pos_emb == "learned" and io.length is None:
            raise ValueError("pos_emb 'learned' needs a task with a maximum sequence length; "
                             "use 'sinusoidal' or 'none'")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.tie_embeddings and io.input_dim != io.output_dim:
            raise ValueError(f"tie_embeddings needs as many output classes as input tokens, "
                             f"got {io.output_dim} outputs for {io.input_dim} tokens")


class Transformer(PackableModel):
    """GPT-style pre-LayerNorm causal decoder: token ids `(B, T)` to logits `(B, T, output_dim)`.

    Dropout is active only while autograd records (`torch.is_grad_enabled()`): the training loop
    steps with gradients on and tasks evaluate under `torch.no_grad()`, so no train/eval switch is
    needed. Its masks come from a generator seeded from `g`, never from torch's global RNG.
    Attention probabilities get no dropout: that of `scaled_dot_product_attention` draws from the
    global RNG.
    """

    name: ClassVar[str] = "transformer"
    Args: ClassVar[type] = TransformerArgs
    accepts: ClassVar[tuple[str, ...]] = ("sequence",)

    def __init__(self, args: TransformerArgs, io: IO, g: torch.Generator, device: str = "cpu"):
        d, L = args.d_model, args.n_layers
        self.args, self.io = args, io
        self.wte = _normal((io.input_dim, d), INIT_STD, g, device)
        self.wpe = _normal((io.length, d), INIT_STD, g, device) if args.pos_emb == "learned" else None
        self.blocks = [_Block(d, args.mlp_ratio * d, INIT_STD / math.sqrt(2 * L), g, device) for _ in range(L)]
        self.ln_f = (torch.ones(d, device=device), torch.zeros(d, device=device))
        self.head = self.wte if args.tie_embeddings else _normal((io.output_dim, d), INIT_STD, g, device)
        self.sinusoid = _sinusoid(io.length, d, device) if args.pos_emb == "sinusoidal" and io.length else None
        self.dropout_g = dropout_generator(g, device)
        tensors = [self.wte, self.wpe, *(t for b in self.blocks for t in b.tensors()), *self.ln_f, self.head]
        unique = {id(t): t for t in tensors if t is not None}  # a tied head is listed once
        self.params = [t.requires_grad_() for t in unique.values()]

    def with_params(self, params: list[torch.Tensor], dropout_g: torch.Generator | None) -> Transformer:
        """This model's structure over other tensors: `params` in the order of `self.params` (and the
        same shapes, or all with one more leading axis: a pack's stacked weights)."""
        it = iter(params)
        m = copy.copy(self)
        m.wte = next(it)
        m.wpe = next(it) if self.wpe is not None else None
        m.blocks = [_Block.__new__(_Block) for _ in self.blocks]
        for b in m.blocks:
            b.ln1, b.qkv, b.attn_proj, b.ln2, b.fc, b.mlp_proj = ((next(it), next(it)) for _ in range(6))
        m.ln_f = (next(it), next(it))
        m.head = m.wte if self.args.tie_embeddings else next(it)
        m.params, m.dropout_g = list(params), dropout_g
        return m

    @classmethod
    def param_count(cls, args: TransformerArgs, io: IO) -> int:
        # per block 2 LayerNorms (4d), qkv (3d^2 + 3d), attention output (d^2 + d), MLP in (r d^2 +
        # r d) and out (r d^2 + d); then token embedding, learned positions, final LayerNorm, head
        d, r = args.d_model, args.mlp_ratio
        blocks = args.n_layers * ((4 + 2 * r) * d * d + (9 + r) * d)
        positions = io.length * d if args.pos_emb == "learned" else 0
        head = 0 if args.tie_embeddings else io.output_dim * d
        return blocks + io.input_dim * d + positions + 2 * d + head

    @staticmethod
    def stack(members: list[Transformer]) -> PackedTransformer:
        return PackedTransformer(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, p = x.shape[1], self.args.dropout
        h = F.embedding(x, self.wte) + self._positions(T)
        h = dropout(h, p, self.dropout_g)
        for block in self.blocks:
            h = block(h, self.args.n_heads, p, self.dropout_g)
        h = F.layer_norm(h, h.shape[-1:], *self.ln_f)
        return h @ self.head.T

    def _positions(self, T: int) -> torch.Tensor | float:
        if self.args.pos_emb == "none":
            return 0.0
        if self.args.pos_emb == "sinusoidal":  # defined at every position: longer sequences are fine
            fits = self.sinusoid is not None and T <= len(self.sinusoid)
            return self.sinusoid[:T] if fits else _sinusoid(T, self.args.d_model, self.wte.device)
        if T > len(self.wpe):
            raise ValueError(f"sequence of length {T} is longer than the model's {len(self.wpe)} learned positions")
        return self.wpe[:T]


class _Block:
    """One pre-LayerNorm block: h + attn(ln1(h)), then h + mlp(ln2(h))."""

    def __init__(self, d: int, hidden: int, proj_std: float, g: torch.Generator, device: str):
        self.ln1 = (torch.ones(d, device=device), torch.zeros(d, device=device))
        self.qkv = (_normal((3 * d, d), INIT_STD, g, device), torch.zeros(3 * d, device=device))
        self.attn_proj = (_normal((d, d), proj_std, g, device), torch.zeros(d, device=device))
        self.ln2 = (torch.ones(d, device=device), torch.zeros(d, device=device))
        self.fc = (_normal((hidden, d), INIT_STD, g, device), torch.zeros(hidden, device=device))
        self.mlp_proj = (_normal((d, hidden), proj_std, g, device), torch.zeros(d, device=device))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (*self.ln1, *self.qkv, *self.attn_proj, *self.ln2, *self.fc, *self.mlp_proj)

    def __call__(self, h: torch.Tensor, n_heads: int, p: float, g: torch.Generator) -> torch.Tensor:
        B, T, d = h.shape
        q, k, v = F.linear(F.layer_norm(h, (d,), *self.ln1), *self.qkv).split(d, dim=2)
        q, k, v = (t.view(B, T, n_heads, d // n_heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, d)
        h = h + dropout(F.linear(a, *self.attn_proj), p, g)
        m = F.gelu(F.linear(F.layer_norm(h, (d,), *self.ln2), *self.fc))
        return h + dropout(F.linear(m, *self.mlp_proj), p, g)


class PackedTransformer(Pack):
    """P Transformers of one shape as stacked weights (each of `Transformer.params` with a leading
    member axis), run with batched ops: an embedding lookup in the members' concatenated tables,
    `baddbmm` for every linear layer, LayerNorm without affine then the members' gains and biases,
    and attention over the P x B sequences at once.

    Hand-written rather than `torch.func.vmap` of the solo forward (`with_params` over the stacked
    weights): vmap cannot draw each member's dropout masks from its own generator, has no batching
    rule for CPU flash attention, and was slower on the 2-core CPU (1 layer, 2 heads, batch 32, 16
    members, forward and backward, one thread, machine loaded: d_model 16 and T 16: this 11.3 ms,
    vmap 13.4 ms, the 16 solo models one after the other 14.2 ms; d_model 32 and T 64: 84 ms, 110
    ms, 67 ms; measured). Batching pays for small activations; past a few MB of them per pack it
    leaves the caches and loses to the solo loop, which is why `pack_size: auto` caps sequence
    packs by activations too (workers/packed.py).
    """

    def __init__(self, members: list[Transformer]):
        self.template = members[0]
        n = len(members[0].params)
        self.params = [torch.stack([m.params[j].detach() for m in members]).requires_grad_() for j in range(n)]
        self.dropout_gs = [m.dropout_g for m in members]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """Logits (P, B, T, o) of token ids X (P, B, T), member p on its own slice."""
        net, args = self.template.with_params(self.params, None), self.template.args
        P, B, T = X.shape
        V, d = net.wte.shape[1:]
        offsets = torch.arange(P, device=X.device).view(P, 1, 1) * V
        h = F.embedding(X + offsets, net.wte.reshape(P * V, d))
        positions = self.template._positions(T) if args.pos_emb != "learned" else net.wpe[:, :T].unsqueeze(1)
        h = self._dropout(h + positions)
        for b in net.blocks:
            q, k, v = _linear(_layer_norm(h, b.ln1), b.qkv).split(d, dim=3)
            q, k, v = (t.reshape(P * B, T, args.n_heads, d // args.n_heads).transpose(1, 2) for t in (q, k, v))
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(P, B, T, d)
            h = h + self._dropout(_linear(a, b.attn_proj))
            m = F.gelu(_linear(_layer_norm(h, b.ln2), b.fc))
            h = h + self._dropout(_linear(m, b.mlp_proj))
        h = _layer_norm(h, net.ln_f)
        return torch.bmm(h.reshape(P, B * T, d), net.head.transpose(1, 2)).view(P, B, T, -1)

    def _dropout(self, h: torch.Tensor) -> torch.Tensor:
        """Each member's dropout on its slice, its masks drawn from its generator as its solo run draws them."""
        p = self.template.args.dropout
        if p == 0 or not torch.is_grad_enabled():
            return h
        keep = torch.stack([torch.rand(h.shape[1:], generator=g, device=h.device) >= p for g in self.dropout_gs])
        return h * keep / (1 - p)

    def member(self, i: int):
        """The forward function of member i alone (the solo forward over its slices)."""
        return self.template.with_params([p[i] for p in self.params], self.dropout_gs[i]).forward

    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`."""
        self.params = [p.detach().index_select(0, idx).requires_grad_() for p in self.params]
        self.dropout_gs = [self.dropout_gs[i] for i in idx.tolist()]


def _linear(x: torch.Tensor, weight_bias: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Each member's linear layer: x (P, B, T, i), W (P, o, i), b (P, o) -> (P, B, T, o)."""
    W, b = weight_bias
    P, B, T, i = x.shape
    return torch.baddbmm(b.unsqueeze(1), x.reshape(P, B * T, i), W.transpose(1, 2)).view(P, B, T, -1)


def _layer_norm(x: torch.Tensor, gain_bias: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    w, b = gain_bias
    shape = (w.shape[0], 1, 1, w.shape[1])
    return torch.addcmul(b.view(shape), F.layer_norm(x, x.shape[-1:]), w.view(shape))


def dropout_generator(g: torch.Generator, device: str) -> torch.Generator | None:
    """A model's dropout generator, seeded from `g`. Drawn last, and always, so that the weights do
    not depend on `dropout`. None on the meta device (a model built there only to count its
    parameters, as `pack_size: auto` does), where no generator can exist."""
    seed = torch.randint(2**62, (), generator=g, device="cpu" if device == "meta" else device)
    if torch.device(device).type == "meta":
        return None
    dropout_g = torch.Generator(device=device)
    dropout_g.manual_seed(int(seed))
    return dropout_g


def dropout(x: torch.Tensor, p: float, g: torch.Generator) -> torch.Tensor:
    """Inverted dropout with masks drawn from `g`, applied only while autograd records.

    Args:
        x: activations; p: drop probability in [0, 1); g: the generator of the masks, on x's device.
    Returns:
        `x` itself when `p == 0` or gradients are off, else `x * mask / (1 - p)`.
    """
    if p == 0 or not torch.is_grad_enabled():
        return x
    keep = torch.rand(x.shape, generator=g, device=x.device) >= p
    return x * keep / (1 - p)


def _normal(shape: tuple[int, ...], std: float, g: torch.Generator, device: str) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=device) * std


def _sinusoid(T: int, d: int, device) -> torch.Tensor:
    # Vaswani et al. 2017, Sec. 3.5: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(same).
    t = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(t * freq)
    pe[:, 1::2] = torch.cos(t * freq)[:, : d // 2]
    return pe

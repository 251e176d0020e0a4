"""Semiautomata: read a sequence of inputs, predict the automaton's state at every position.

The tasks of "Transformers Learn Shortcuts to Automata" (Liu, Ash, Goel, Krishnamurthy, Zhang,
ICLR 2023): a semiautomaton (states Q, inputs A, transition table delta: Q x A -> Q) starts in state
0 and reads T inputs; the label at position t is the state after reading inputs 1..t. Each automaton
is a transition table built once in pure Python (so `io` needs no torch); the task simulates it over
a batch with one table lookup per position.

Every automaton has a no-op input with id 0 (parity's 0, the group identity, gridworld's `stay`,
flip-flop's `read`), so one argument, `p_identity`, sets the input distribution of all of them.
For the groups, state ids enumerate the elements in breadth-first order from the identity (id 0)
under right multiplication by the inputs: after inputs a_1..a_t the state is a_1 a_2 ... a_t.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar, Literal

from paretolab.tasks.lazy import no_grad, torch

from paretolab.vocabulary.errors import shown
from paretolab.tasks.base import IO
from paretolab.tasks.sampled import SampledTask
from paretolab.tasks.seeding import generator

Name = Literal["parity", "cyclic", "dihedral", "quaternion", "symmetric", "alternating", "gridworld", "flipflop"]

# Sizes used when `n` is None. Our choices, small enough for a CPU sweep; S_5 and A_5 are the
# smallest non-solvable groups, the paper's headline case (Liu et al. 2023, Thm. 2 and Sec. 5).
DEFAULT_N: dict[str, int | None] = {
    "parity": None, "cyclic": 6, "dihedral": 6, "quaternion": None, "symmetric": 5, "alternating": 5,
    "gridworld": 9, "flipflop": 2,
}
# The smallest and largest `n` of each sized automaton: D_n acts on n >= 3 vertices (D_2 would need
# another representation); S_n and A_n have n! and n!/2 states, so n stays <= 7 (5040 classes).
N_RANGE: dict[str, tuple[int, int]] = {
    "cyclic": (2, 10**6), "dihedral": (3, 10**6), "symmetric": (3, 7), "alternating": (3, 7),
    "gridworld": (2, 10**6), "flipflop": (2, 10**6),
}


@dataclass(frozen=True)
class Semiautomaton:
    """A transition table: `delta[q][a]` is the state after input `a` in state `q`; start state 0.

    `states` labels each state (for groups the element: a permutation tuple, a quaternion
    `(a, b, c, d)` for a + bi + cj + dk, a residue); `inputs` names each input, input 0 is the no-op.
    """

    name: str
    states: tuple[Hashable, ...]
    inputs: tuple[str, ...]
    delta: tuple[tuple[int, ...], ...]


def automaton(name: str, n: int | None = None) -> Semiautomaton:
    """The semiautomaton `name` of size `n` (None: its default size, `DEFAULT_N`).

    Inputs per automaton (input 0 is always the no-op):
      parity: 0, 1 (flip). cyclic C_n: +0, +1. dihedral D_n (symmetries of the n-gon, as
      permutations of its vertices): id, r (rotate by one), s (reflect i -> -i). quaternion Q8:
      1, i, j. symmetric S_n: id, the transposition (1 2), the n-cycle (1 2 ... n). alternating A_n:
      id, the 3-cycle (1 2 3), and (1 2 ... n) for odd n or (2 3 ... n) for even n. gridworld with
      n cells: stay, left, right (clamped at the ends), start in cell 0. flipflop with n symbols:
      read (keep the last written symbol), write 0 .. write n-1; starts as if 0 had been written.

    Raises:
        ValueError: unknown name, or `n` outside the automaton's range (or given where it has none).
    """
    if name not in DEFAULT_N:
        raise ValueError(f"unknown automaton {shown(name)}; known: {', '.join(DEFAULT_N)}")
    size = DEFAULT_N[name] if n is None else n
    if DEFAULT_N[name] is None and n is not None:
        raise ValueError(f"automaton {shown(name)} has no size; leave n unset (null), got n={n}")
    if name in N_RANGE and not N_RANGE[name][0] <= size <= N_RANGE[name][1]:
        lo, hi = N_RANGE[name]
        raise ValueError(f"automaton {shown(name)} needs {lo} <= n <= {hi}, got n={size}")
    return _build(name, size)


@cache
def _build(name: str, n: int | None) -> Semiautomaton:
    if name == "parity":
        return _group("parity", 0, {"0": 0, "1": 1}, lambda a, b: (a + b) % 2)
    if name == "cyclic":
        return _group(f"cyclic_{n}", 0, {"+0": 0, "+1": 1}, lambda a, b: (a + b) % n)
    if name == "dihedral":
        r, s = tuple((i + 1) % n for i in range(n)), tuple((-i) % n for i in range(n))
        return _group(f"dihedral_{n}", _identity(n), {"id": _identity(n), "r": r, "s": s}, compose)
    if name == "quaternion":
        gens = {"1": (1, 0, 0, 0), "i": (0, 1, 0, 0), "j": (0, 0, 1, 0)}
        return _group("quaternion", (1, 0, 0, 0), gens, quaternion_product)
    if name == "symmetric":
        gens = {"id": _identity(n), "(1 2)": _cycle(n, range(2)), f"(1..{n})": _cycle(n, range(n))}
        return _group(f"symmetric_{n}", _identity(n), gens, compose)
    if name == "alternating":
        long = range(n) if n % 2 else range(1, n)  # an odd-length cycle is an even permutation
        gens = {"id": _identity(n), "(1 2 3)": _cycle(n, range(3)), f"({long[0] + 1}..{n})": _cycle(n, long)}
        return _group(f"alternating_{n}", _identity(n), gens, compose)
    if name == "gridworld":
        delta = tuple((q, max(q - 1, 0), min(q + 1, n - 1)) for q in range(n))
        return Semiautomaton(f"gridworld_{n}", tuple(range(n)), ("stay", "left", "right"), delta)
    delta = tuple((q, *range(n)) for q in range(n))
    return Semiautomaton(f"flipflop_{n}", tuple(range(n)), ("read", *(f"write {j}" for j in range(n))), delta)


def _group(name: str, identity: Hashable, gens: dict[str, Hashable], mul: Callable) -> Semiautomaton:
    """The Cayley table of the group generated by `gens`, restricted to right multiplication by them."""
    elements, index = [identity], {identity: 0}
    for g in elements:  # grows while we walk it: breadth-first closure
        for h in gens.values():
            e = mul(g, h)
            if e not in index:
                index[e] = len(elements)
                elements.append(e)
    delta = tuple(tuple(index[mul(g, h)] for h in gens.values()) for g in elements)
    return Semiautomaton(name, tuple(elements), tuple(gens), delta)


def compose(p: tuple[int, ...], q: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation `p` then `q` (tuples of images: `p[i]` is where `p` sends i)."""
    return tuple(q[i] for i in p)


def quaternion_product(x: tuple[int, ...], y: tuple[int, ...]) -> tuple[int, ...]:
    """The Hamilton product x y of quaternions written (a, b, c, d) = a + bi + cj + dk."""
    a1, b1, c1, d1 = x
    a2, b2, c2, d2 = y
    return (a1 * a2 - b1 * b2 - c1 * c2 - d1 * d2, a1 * b2 + b1 * a2 + c1 * d2 - d1 * c2,
            a1 * c2 - b1 * d2 + c1 * a2 + d1 * b2, a1 * d2 + b1 * c2 - c1 * b2 + d1 * a2)


def _identity(n: int) -> tuple[int, ...]:
    return tuple(range(n))


def _cycle(n: int, points: range) -> tuple[int, ...]:
    """The cycle sending points[0] -> points[1] -> ... -> points[0], fixing the rest of 0..n-1."""
    p = list(range(n))
    for a, b in zip(points, [*points[1:], points[0]]):
        p[a] = b
    return tuple(p)


def simulate(delta: torch.Tensor, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """States `(B, T)` after each input of `x` `(B, T)`, from `start`, by the table `delta` `(Q, A)`.

    One gather per position over the whole batch: T small ops. (A parallel prefix scan over the
    transition functions takes log T steps but B x T x Q memory, 190 MB for S_5 at B=1000, T=200.)
    """
    B, T = x.shape
    flat, A = delta.reshape(-1), delta.shape[1]
    q = torch.full((B,), start, dtype=torch.long, device=x.device)
    out = torch.empty((B, T), dtype=torch.long, device=x.device)
    for t in range(T):
        q = flat[q * A + x[:, t]]
        out[:, t] = q
    return out


@dataclass(frozen=True)
class AutomatonArgs:
    """Arguments of the automaton task.

    automaton: which semiautomaton (see `automaton()` for each one's inputs); n: its size (cells,
    symbols, n-gon, S_n / A_n, C_n), None for its default and for parity and quaternion, which
    have none; length: training and test sequence length T; test_length: length of the
    length-generalization test (None: 2 * length); p_identity: probability of the no-op input 0 at
    each position, the rest spread evenly over the other inputs (None: all inputs equally likely;
    for parity, 1 - p_identity is the probability of a flip); train_size: fixed number of training
    sequences, or None for online (fresh sequences every step).
    """

    automaton: Name = "parity"
    n: int | None = None
    length: int = 100
    test_length: int | None = None
    p_identity: float | None = None
    train_size: int | None = None

    def check(self) -> None:
        automaton(self.automaton, self.n)
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if self.test_length is not None and self.test_length < 1:
            raise ValueError(f"test_length must be >= 1 or null (2 * length), got {self.test_length}")
        if self.p_identity is not None and not 0.0 <= self.p_identity < 1.0:
            raise ValueError(f"p_identity must be in [0, 1) or null (uniform inputs), got {self.p_identity}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null (online), got {self.train_size}")

    @property
    def long_length(self) -> int:
        return 2 * self.length if self.test_length is None else self.test_length


class Automaton(SampledTask):
    """Predict the state at every position; cross-entropy over all positions.

    Metrics: test_loss, test_error (fraction of wrong positions), test_acc, seq_acc (fraction of
    sequences right at every position), on length-T sequences; long_acc and long_seq_acc, the same
    on `test_length` sequences (length generalization). The test sets have `test_size` sequences each.
    """

    name: ClassVar[str] = "automaton"
    Args: ClassVar[type] = AutomatonArgs
    losses: ClassVar[tuple[str, ...]] = ("cross_entropy",)
    metrics: ClassVar[tuple[str, ...]] = ("test_loss", "test_error", "test_acc", "seq_acc", "long_acc", "long_seq_acc")
    pack_free: ClassVar[tuple[str, ...]] = ("train_size", "p_identity")

    def __init__(self, args: AutomatonArgs, seed: int, test_size: int, device: str = "cpu"):
        self.args = args
        self.device = device
        self.automaton = automaton(args.automaton, args.n)
        self.delta = torch.tensor(self.automaton.delta, dtype=torch.long, device=device)
        A = len(self.automaton.inputs)
        p = 1.0 / A if args.p_identity is None else args.p_identity
        probs = torch.tensor([p] + [(1.0 - p) / (A - 1)] * (A - 1), dtype=torch.float64)
        self._cdf = probs.cumsum(0)[:-1].to(torch.float32).to(device)  # input = #(cdf <= u)
        self._init_streams(seed, test_size, device)
        self._long_x, self._long_y = self._sample(test_size, args.long_length, generator(seed, "long_test", device))

    @staticmethod
    def io(args: AutomatonArgs) -> IO:
        a = automaton(args.automaton, args.n)
        return IO("sequence", len(a.inputs), len(a.states), max(args.length, args.long_length))

    def _sample(self, m: int, T: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        u = torch.rand((m, T), generator=g, device=self.device)
        x = torch.searchsorted(self._cdf, u, right=True)
        return x, simulate(self.delta, x)

    def _draw(self, m: int, g: torch.Generator, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return self._sample(m, self.args.length, g)

    def loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def packed_loss(self, out: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
        ce = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1), reduction="none")
        return ce.reshape(y.shape[0], -1).mean(dim=1)

    def error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out, y).float().mean()

    def packed_error(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return _wrong(out, y).reshape(y.shape[0], -1).float().mean(dim=1)

    @no_grad
    def evaluate(self, forward, kind: str) -> dict[str, float]:
        out = _forward_chunks(forward, self._test_x)
        wrong = _wrong(out, self._test_y)
        long_wrong = _wrong(_forward_chunks(forward, self._long_x), self._long_y)
        error = float(wrong.float().mean())
        return {
            "test_loss": float(self.loss(out, self._test_y, kind)),
            "test_error": error,
            "test_acc": 1.0 - error,
            "seq_acc": float((~wrong.any(dim=1)).float().mean()),
            "long_acc": 1.0 - float(long_wrong.float().mean()),
            "long_seq_acc": float((~long_wrong.any(dim=1)).float().mean()),
        }


# Evaluate at most this many tokens per forward call: a Transformer's attention on 1000 sequences
# of 200 tokens would otherwise hold 1000 x heads x 200^2 scores at once.
EVAL_TOKENS = 2**16


def _forward_chunks(forward, x: torch.Tensor) -> torch.Tensor:
    rows = max(1, EVAL_TOKENS // x.shape[1])
    return torch.cat([forward(x[i : i + rows]) for i in range(0, x.shape[0], rows)])


def _wrong(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Wrong positions: argmax differs from the label, or any score is NaN (argmax may pick a NaN)."""
    return (out.argmax(dim=-1) != y) | out.isnan().any(dim=-1)

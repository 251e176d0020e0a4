"""Independent random streams derived from one trial seed.

Every random choice of a trial (its hidden structure, its test set, its training stream, its
initialization) comes from its own `torch.Generator`, seeded from the trial seed and the stream's
purpose. Streams never share state, so adding an evaluation or packing trials together cannot shift
any other stream.
"""

from __future__ import annotations

import hashlib

from paretolab.tasks.lazy import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for the stream `purpose` of the trial with seed `seed`."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, purpose: str, device: str = "cpu") -> torch.Generator:
    """A fresh generator on `device` for the stream `purpose` of trial seed `seed`."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, purpose))
    return g


def hidden_subset(seed: int, n: int, k: int, device: str = "cpu") -> torch.Tensor:
    """A task's hidden `k` of `n` coordinates (e.g. a parity's support), sorted, drawn from the
    trial's stream "support"."""
    return torch.randperm(n, generator=generator(seed, "support"))[:k].sort().values.to(device)

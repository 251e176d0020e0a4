"""A pack's training batches: each member's next batch from its own stream, drawn ahead where it pays.

A task offers how its members draw together (`Task.packed_draws`: one draw per member into a
buffer, one computation turning the stacked draws into batches); the pack owns the buffer. On CPU
each member draws the random numbers of several steps in one call, and when finished members leave
the pack (`keep`), the others keep what they drew ahead, so every member's stream stays its solo
stream. A task that offers nothing is asked member by member (`train_batch`).
"""

from __future__ import annotations

import math

import torch

from paretolab.tasks.base import Task

# On CPU a member draws the random numbers of up to this many steps in one call, within this many
# drawn values per pack: torch's CPU generator gives one draw of K*B values exactly as K draws of B
# (tests/test_packed_streams.py checks it), so every member's stream is its solo stream. One call per member
# per step was 29% of a 100-member pack's time (benchmarks/vs_ray_tune.py's grid, profiled). CUDA
# generators offset each call, so on a GPU members draw step by step.
PREFETCH_STEPS = 64
PREFETCH_VALUES = 2**22


class PackBatches:
    """The stacked next training batches `(P, B, ...)` of a pack's `members` (task objects of one
    class, in pack order), each exactly what the member's `train_batch` would give.

    Owned by one pack's training loop; not thread-safe. `block` holds what the members drew ahead,
    `(P, K * B, *row)`, read from `pos` on.
    """

    def __init__(self, members: list[Task]):
        self.members = members
        self.draws = type(members[0]).packed_draws(members)
        self.block: torch.Tensor | None = None
        self.pos = 0

    def next(self, B: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The members' next batches of `B` examples, `(X, Y)`."""
        if self.draws is None:
            pairs = [m.train_batch(B) for m in self.members]
            return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])
        if self.block is None or self.pos + B > self.block.shape[1]:
            self._draw_ahead(B)
        self.pos += B
        return self.draws.batches(self.block[:, self.pos - B:self.pos])

    def keep(self, idx: torch.Tensor) -> None:
        """Drop every member not in `idx`; the others keep what they drew ahead."""
        self.members = [self.members[i] for i in idx.tolist()]
        draws = type(self.members[0]).packed_draws(self.members)
        if self.block is not None:
            assert draws is not None and (draws.row, draws.dtype) == (self.draws.row, self.draws.dtype), \
                "a pack's members drew ahead in a way their subset cannot continue"
            self.block, self.pos = self.block.index_select(0, idx.to(self.block.device))[:, self.pos:], 0
        self.draws = draws

    def _draw_ahead(self, B: int) -> None:
        device = self.members[0].device
        row, P = self.draws.row, len(self.members)
        steps = max(1, min(PREFETCH_STEPS, PREFETCH_VALUES // (P * B * math.prod(row))))
        if str(device) != "cpu":
            steps = 1
        self.block = torch.empty((P, steps * B, *row), dtype=self.draws.dtype, device=device)
        for m, out in zip(self.members, self.block):
            self.draws.draw(m, out)
        self.pos = 0

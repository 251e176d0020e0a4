"""Which trials train together: the packs of a call, decided once, on the driver.

The driver sizes its calls by the pack size and cuts each call into the units a worker trains (a
pack of trials of one shape, or a trial alone) before sending it; the worker trains the units as
they come and decides nothing. The size of a shape's packs (`resources.pack_size`, or under `auto`
the kind's own rule, `Runner.pack_size`) is computed once per shape.
"""

from __future__ import annotations

from paretolab.workers.runners import runner
from paretolab.vocabulary.trial import Assignment, TrialConfig


class PackPlan:
    """How the trials of one run pack on `device` under `pack_size` (the spec's; None for auto).

    Held by the driver alone; not thread-safe.
    """

    def __init__(self, device: str, pack_size: int | None):
        self.device, self.pack_size = device, pack_size
        self._sizes: dict[tuple[str, str], int] = {}  # members per pack, by `key`

    def key(self, trial: TrialConfig) -> tuple[str, str] | None:
        """Equal for trials that can train in one pack; None for a trial that trains alone (any
        under `pack_size: 1`)."""
        if self.pack_size == 1:
            return None
        key = runner(trial).pack_key(trial)
        return None if key is None else (trial.kind, key)

    def size(self, trial: TrialConfig) -> int:
        """Members per pack of trials like `trial` (1 for one that trains alone)."""
        key = self.key(trial)
        return 1 if key is None else self._size(trial, key)

    def units(self, assignments: list[Assignment]) -> list[list[Assignment]]:
        """`assignments`, in order, as a worker trains them: each run of consecutive assignments
        of equal `key` cut into packs of its `size`, every other assignment alone."""
        keys = [self.key(a.trial) for a in assignments]
        units, i = [], 0
        while i < len(assignments):
            j = i + 1
            while keys[i] is not None and j < len(assignments) and keys[j] == keys[i]:
                j += 1
            size = 1 if keys[i] is None else self._size(assignments[i].trial, keys[i])
            units += [assignments[k:min(j, k + size)] for k in range(i, j, size)]
            i = j
        return units

    def _size(self, trial: TrialConfig, key: tuple[str, str]) -> int:
        if key not in self._sizes:
            self._sizes[key] = runner(trial).pack_size(trial, self.device, self.pack_size)
        return self._sizes[key]

"""Learning-rate schedules: the factor that multiplies a trial's `lr` at each step.

One pure function serves the solo loop (which writes `lr * factor` into each parameter group) and
packed training (which multiplies each member's own `lr` by the pack's common factor), so that a
member and its solo run step with the same learning rates.
"""

from __future__ import annotations

import math

from paretolab.vocabulary.errors import shown


def lr_factor(step: int, max_steps: int, schedule: str, warmup_steps: int) -> float:
    """The multiple of the peak learning rate used by update number `step` (0 for the first).

    Warmup is linear, (step + 1) / (warmup_steps + 1) for step < warmup_steps, as in nanoGPT's
    `get_lr` (karpathy/nanoGPT `train.py`), so that the first update is not wasted at lr 0. After
    warmup, with progress p = (step - warmup_steps) / (max_steps - warmup_steps) clamped to [0, 1]:
    `constant` is 1, `linear` is 1 - p and `cosine` is (1 + cos(pi p)) / 2, both reaching 0 at
    step `max_steps` (whose update is never taken: the last one, step max_steps - 1, is small but
    not 0).

    Args:
        step: the update, 0-based. max_steps: the trial's step budget. schedule: `constant`,
        `linear` or `cosine`. warmup_steps: steps of linear warmup (0 for none).
    Returns:
        The factor, in (0, 1] for every step < max_steps.
    Raises:
        ValueError: an unknown schedule.
    """
    if schedule not in ("constant", "linear", "cosine"):
        raise ValueError(f"unknown schedule {shown(schedule)}; known: constant, linear, cosine")
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    p = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - p
    return 0.5 * (1.0 + math.cos(math.pi * p))

"""When a trial ends, and how: the one rule every trainable is judged by.

The built-in loop (solo and packed) and the researcher's own code (a function's `ctx.report`, a
command's metric lines) hand each evaluation to an `Outcome`, which says whether the attempt ends
there: `diverged` on a NaN or infinite metric, `finished` at `max_steps` or once the success
criterion holds under `stop_on_success`, `pruned` when a search's pruner finds it hopeless.
An attempt that ends because its criterion held under `stop_on_success` is `stopped_at_success`:
its last evaluation, whose metrics its result calls final, is its first success.
"""

from __future__ import annotations

import math

from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import Pruning


class Outcome:
    """Follows one attempt's evaluations. `first_success` (step) and `first_success_samples` are
    where the criterion first held; `status` is how the attempt ended, None while it runs."""

    __slots__ = ("success", "prune", "max_steps", "first_success", "first_success_samples", "status")

    def __init__(self, success: Success, prune: Pruning | None = None, max_steps: int | None = None):
        self.success, self.prune, self.max_steps = success, prune, max_steps
        self.first_success: int | None = None
        self.first_success_samples: int | None = None
        self.status: str | None = None

    def see(self, step: int, samples: int, metrics: dict[str, float | None]) -> str | None:
        """Judge the evaluation at `step` (`samples` seen); returns the status the attempt ends with
        there (`diverged`, `finished`, `pruned`), or None if it goes on. Once ended, it stays ended."""
        if self.status is not None:
            return self.status
        if any(v is not None and not math.isfinite(v) for v in metrics.values()):
            self.status = "diverged"
        else:
            if self.first_success is None and self.success.holds(metrics):
                self.first_success, self.first_success_samples = step, samples
            if (self.max_steps is not None and step >= self.max_steps) or (self.first_success is not None and self.success.stop_on_success):
                self.status = "finished"
            elif self.first_success is None and self.prune is not None and self.prune.hopeless(step, metrics):
                self.status = "pruned"
        return self.status

    @property
    def stopped_at_success(self) -> bool:
        """Whether the attempt ended at its first success because `stop_on_success` is on (also when
        that evaluation is the one at `max_steps`: its metrics are still the first past the threshold)."""
        return self.status == "finished" and self.first_success is not None and self.success.stop_on_success

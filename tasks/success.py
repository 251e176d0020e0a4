"""The success criterion: a predicate on one metric, checked at every evaluation."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Literal, Mapping

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclass(frozen=True)
class Success:
    """`metric op value`, e.g. `test_error <= 0.1`; with `stop_on_success` a trial stops once it holds."""

    metric: str = "test_error"
    op: Literal["<=", "<", ">=", ">"] = "<="
    value: float = 0.1
    stop_on_success: bool = True

    def holds(self, metrics: Mapping[str, float]) -> bool:
        """True when the metric is present, finite and satisfies the predicate."""
        x = metrics.get(self.metric)
        return x is not None and math.isfinite(x) and OPS[self.op](x, self.value)

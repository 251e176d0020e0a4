"""The success criterion: a predicate on one metric, checked at every evaluation by the workers,
steered by the searches and recomputed over stored curves by the analysis."""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Literal, Mapping

from paretolab.vocabulary.errors import UsageError

OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}
_TEXT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*")


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

    @classmethod
    def parse(cls, text: str) -> Success:
        """Parse `test_error<=0.05` (spaces allowed), as the analysis commands' `--success` takes it.

        Raises:
            UsageError: the text is not `metric op number`.
        """
        m = _TEXT.fullmatch(text)
        try:
            return cls(m.group(1), m.group(2), float(m.group(3)))
        except (AttributeError, ValueError):
            raise UsageError(f"bad success criterion {text!r}; expected METRIC OP VALUE, e.g. test_error<=0.1") from None

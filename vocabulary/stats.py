"""Small statistics every layer agrees on: the 95% Wilson interval of a success probability.

The frontier search computes it in Python while it steers; the analysis computes it in SQL over the
store. Both renderings come from the formula here.
"""

from __future__ import annotations

import math

WILSON_Z = 1.959963984540054  # 95% two-sided normal quantile


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of `successes` out of `n` (n >= 1); exact 0 and 1 at the ends."""
    z, p = WILSON_Z, successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (0.0 if successes == 0 else centre - half, 1.0 if successes == n else centre + half)


def wilson_sql(p: str, n: str) -> tuple[str, str]:
    """The same interval as two SQL expressions over the columns `p` (the proportion) and `n`."""
    z = WILSON_Z
    centre = f"{p} + {z * z} / (2 * {n})"
    half = f"{z} * sqrt({p} * (1 - {p}) / {n} + {z * z} / (4 * {n} * {n}))"
    # exact at p = 0 and p = 1, where the formula is off by rounding (1e-17)
    return (f"CASE WHEN {p} = 0 THEN 0.0 ELSE ({centre} - {half}) / (1 + {z * z} / {n}) END",
            f"CASE WHEN {p} = 1 THEN 1.0 ELSE ({centre} + {half}) / (1 + {z * z} / {n}) END")

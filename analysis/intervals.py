"""What the parametric fits share: percentile bootstrap intervals and their tables.

A fit's parameters are estimated on the data, then re-estimated on `n_boot` resamples of it (rows
drawn with replacement, one numpy Generator seeded by the caller); the 95% interval of a parameter
is the 2.5th and 97.5th percentiles of its resampled estimates (the percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

CI_PERCENTILES = (2.5, 97.5)  # a 95% interval


def resampled(n_rows: int, n_boot: int, fit: Callable[[np.ndarray], np.ndarray | None],
              rng: np.random.Generator) -> np.ndarray:
    """The estimates of `fit(counts)` over `n_boot` resamples, one row each (resamples whose fit is
    None, one that cannot be made, left out). `counts[i]` is how often row i was drawn: a fit
    weighs each row by it (a weighted fit equals the fit of the resample, rows repeated)."""
    out = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, n_rows, size=n_rows), minlength=n_rows).astype(float)
        estimate = fit(counts)
        if estimate is not None and np.all(np.isfinite(estimate)):
            out.append(estimate)
    return np.array(out) if out else np.empty((0, 0))


def interval(draws: np.ndarray, column: int) -> tuple[float | None, float | None]:
    """The 95% percentile interval of one column of the resampled estimates (None without any, or
    where the resamples do not estimate that column)."""
    if draws.size == 0 or column >= draws.shape[1]:
        return None, None
    lo, hi = np.percentile(draws[:, column], CI_PERCENTILES)
    return float(lo), float(hi)


def parameter_table(names: Sequence[str], estimates: Sequence[float], draws: np.ndarray,
                    meanings: Sequence[str]) -> pa.Table:
    """One row per parameter: parameter, estimate, lo, hi (95% bootstrap), n_boot (resamples that
    gave a fit), meaning."""
    rows = []
    for i, (name, value, meaning) in enumerate(zip(names, estimates, meanings)):
        lo, hi = interval(draws, i)
        rows.append({"parameter": name, "estimate": float(value), "lo": lo, "hi": hi,
                     "n_boot": int(len(draws)), "meaning": meaning})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("parameter", pa.string()), ("estimate", pa.float64()), ("lo", pa.float64()), ("hi", pa.float64()),
        ("n_boot", pa.int64()), ("meaning", pa.string())]))

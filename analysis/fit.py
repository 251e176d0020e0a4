"""Scaling fits: a power law y = a * x**b per group, fitted on log-log, with a bootstrap interval.

The cost `y` (steps_, samples_ or flops_to_success) is recomputed from the curves by `costs_sql`,
so a stricter criterion than the sweep's own can be asked for. The fit is ordinary least squares of
log10(y) on log10(x) over the trials that succeeded; the 95% interval of the exponent is the
percentile bootstrap over those trials (resampled with replacement).

Censoring: a trial that never met the criterion has no cost, only the knowledge that its cost is
more than it ran. Such trials are left out of the fit and counted in `censored_fraction`. When the
slow trials are the censored ones (typically at large x), the trials left are the lucky fast ones,
so heavy censoring biases the exponent downward; read `censored_fraction` before the exponent.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from paretolab.analysis.intervals import CI_PERCENTILES
from paretolab.analysis.cells import COMPARED, SweepInfo, comparing, check_axes, costs_sql, ident, numeric_axes, open_sweep
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import COST_COLUMNS

BOOT_CHUNK_CELLS = 4_000_000  # resample in chunks of at most this many indices (32 MB of int64)
FITTED = "fitted"
CENSORING = ("left out of the fit; this biases the exponent downward when the slow trials are the "
             "censored ones")


def fit(store: Store, sweep: str, y: str = "steps_to_success", x: str | None = None, by: list[str] | None = None,
        n_boot: int = 1000, seed: int = 0, success: str | None = None) -> pa.Table:
    """Fit log10(y) = log10(a) + b * log10(x) by least squares, per combination of `by`.

    Trials that failed (raised) are left out. Of the others in a group, those whose `x` is NULL are
    left out (they are not on the axis), those that never succeeded are censored (counted, not
    fitted: see the module docstring), and those with y <= 0 (success at the first evaluation,
    step 0) or no y (flops of a trial without n_params) cannot be placed on a log axis and are not
    fitted either; the rest are the fit's points.

    Args:
        store: the result store.
        sweep: the sweep's name, or several (`cells.open_sweep`): fitted per sweep.
        y: the cost: one of steps_to_success, samples_to_success, flops_to_success.
        x: a numeric, positive axis or parameter (such as n); default the sweep's first numeric axis
            with values > 0 (`cells.numeric_axes`).
        by: axes to fit separately (default: one fit over every trial).
        n_boot: bootstrap resamples for the exponent's 95% interval (0: no interval). Resamples in
            which every point has the same x carry no slope and are dropped.
        seed: seed of the numpy Generator that draws the resamples (one Generator, groups in order).
        success: a criterion such as `test_error<=0.05`; default the sweep's.
    Returns:
        One row per group: the by axes, exponent (b), exponent_lo, exponent_hi, prefactor (a), r2
        (in log space), n_points, n_trials (non-failed trials with x), censored_fraction (never
        succeeded / n_trials), status ('fitted', or why there is no fit: then exponent, prefactor
        and r2 are NULL), censoring (how censored trials were treated).
    Raises:
        StoreError: unknown sweep. UsageError: bad y, x, by, n_boot, metric or criterion.
    """
    if y not in COST_COLUMNS:
        raise UsageError(f"unknown cost {y!r}; known: {', '.join(COST_COLUMNS)}")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    by = tuple(by or ())
    if comparing(store, sweep) and COMPARED not in by:
        by = (COMPARED, *by)
    data = _points(store, sweep, y, x, by, success)
    rng = np.random.default_rng(seed)
    g = data.column("_group").to_numpy()
    xs = data.column("_x").to_numpy(zero_copy_only=False).astype(float)
    ys = data.column("_y").to_numpy(zero_copy_only=False).astype(float)  # NULL -> nan
    censored = data.column("_censored").to_numpy(zero_copy_only=False).astype(bool)
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.array([], dtype=int)
    rows = []
    for start, stop in zip(starts, np.r_[starts[1:], len(g)]):
        row = {b: data.column(b)[int(start)].as_py() for b in by}
        rows.append({**row, **_fit_group(xs[start:stop], ys[start:stop], censored[start:stop], n_boot, rng)})
    return _table(rows, data.select(list(by)).schema if by else pa.schema([]))


def predict(a: float, b: float, x):
    """The power law `a * x**b` at `x` (a number or an array), e.g. to draw a fit over its points."""
    return a * np.asarray(x, dtype=float) ** b


def default_x(con: duckdb.DuckDBPyConnection, info: SweepInfo) -> str:
    """The axis `fit` takes when none is named: the sweep's first numeric axis with values > 0.

    Raises:
        UsageError: the sweep has no such axis.
    """
    for axis in numeric_axes(con, info, positive=True):
        return axis
    raise UsageError(f"no axis of the sweep {info.name!r} to fit a power law against (a numeric axis with values "
                     f"> 0); axes: {', '.join(info.axes) or 'none'}; name one with --x")


def _points(store: Store, sweep: str, y: str, x: str | None, by: tuple[str, ...], success: str | None) -> pa.Table:
    """Every non-failed trial with a non-NULL x: its by values, x, y, whether it is censored, its group."""
    with open_sweep(store, sweep, success) as (con, info, criterion):
        check_axes(con, info, by)
        x = check_axes(con, info, [x])[0] if x is not None else default_x(con, info)
        if x in by:
            raise UsageError(f"x {x!r} cannot also be a --by axis; by: {', '.join(by)}")
        keys = ", ".join(ident(b) for b in by)
        group = f"dense_rank() OVER (ORDER BY {keys})" if by else "1"
        data = con.sql(f"""
            SELECT {keys + ',' if by else ''} {ident(x)} AS _x, {ident(y)} AS _y,
                   steps_to_success IS NULL AS _censored, {group} AS _group
            FROM ({costs_sql(con, criterion)}) WHERE {ident(x)} IS NOT NULL
            ORDER BY _group, trial_id""").to_arrow_table()
    kind = data.schema.field("_x").type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise UsageError(f"x {x!r} is not numeric (type {kind}); a power-law fit needs a numeric axis")
    if len(data) and min(data.column("_x").to_pylist()) <= 0:
        raise UsageError(f"x {x!r} has the value {min(data.column('_x').to_pylist())!r}; a log-log fit needs x > 0")
    return data


def _fit_group(x: np.ndarray, y: np.ndarray, never: np.ndarray, n_boot: int, rng: np.random.Generator) -> dict:
    n_trials, censored = len(x), int(never.sum())
    ok = ~never & (y > 0)  # nan (no cost recorded) compares False
    lx, ly = np.log10(x[ok]), np.log10(y[ok])
    out = {"exponent": None, "exponent_lo": None, "exponent_hi": None, "prefactor": None, "r2": None,
           "n_points": int(ok.sum()), "n_trials": n_trials,
           "censored_fraction": censored / n_trials if n_trials else None,
           "censoring": f"{censored} of {n_trials} never succeeded: {CENSORING}" if censored else "none censored"}
    distinct = len(np.unique(lx))
    if distinct < 2:
        return {**out, "status": f"need 2 distinct x among succeeded trials, have {distinct}"}
    dx = lx - lx.mean()
    b = float((dx * (ly - ly.mean())).sum() / (dx * dx).sum())
    log_a = float(ly.mean() - b * lx.mean())
    sst = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1 - float(((ly - log_a - b * lx) ** 2).sum()) / sst if sst > 0 else None
    boot = _bootstrap_slopes(lx, ly, n_boot, rng)
    lo, hi = (float(v) for v in np.percentile(boot, CI_PERCENTILES)) if len(boot) else (None, None)
    return {**out, "exponent": b, "exponent_lo": lo, "exponent_hi": hi, "prefactor": 10.0 ** log_a, "r2": r2,
            "status": FITTED}


def _bootstrap_slopes(lx: np.ndarray, ly: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Least-squares slopes of `n_boot` resamples (with replacement) of the points, vectorized in chunks."""
    n = len(lx)
    chunk = max(1, BOOT_CHUNK_CELLS // n)
    slopes = []
    for done in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - done), n))
        bx, by = lx[idx], ly[idx]
        varied = bx.max(axis=1) > bx.min(axis=1)  # exact test: a mean of equal floats may not be exact
        bx, by = bx[varied], by[varied]
        dx = bx - bx.mean(axis=1, keepdims=True)
        slopes.append((dx * (by - by.mean(axis=1, keepdims=True))).sum(axis=1) / (dx * dx).sum(axis=1))
    return np.concatenate(slopes) if slopes else np.array([])


def _table(rows: list[dict], by_schema: pa.Schema) -> pa.Table:
    f64, i64 = pa.float64(), pa.int64()
    schema = pa.schema([*by_schema, ("exponent", f64), ("exponent_lo", f64), ("exponent_hi", f64),
                        ("prefactor", f64), ("r2", f64), ("n_points", i64), ("n_trials", i64),
                        ("censored_fraction", f64), ("status", pa.string()), ("censoring", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)

"""Per-trial cost to success and per-cell success statistics, computed in DuckDB.

A *cell* is one grid point without its seed: the trials that share every axis value of the sweep
and differ only in seed. Costs are recomputed from the curves, so a stricter or looser success
criterion than the one the sweep ran with can be asked for (trials that stopped early at the
sweep's own criterion cannot show a later success: they count as not succeeding).

Trials whose last attempt `failed` (raised) are left out: they are errors, not outcomes. So are
trials an adaptive search `pruned` (stopped early as hopeless), unless `include_pruned` asks for
them (then they count as seeds that did not succeed, unless their curve met the criterion).
A `diverged` trial succeeded if its curve met the criterion before the loss became NaN/inf (as the
workers record it); NaN and infinite metric values never meet a criterion.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from paretolab.analysis.store import Store, columns
from paretolab.errors import StoreError, UsageError

# Training FLOPs per example: forward + backward is about 6 x parameters per token (Kaplan et al.
# 2020, "Scaling Laws for Neural Language Models", Sec. 2.1). The workers record it per trial as
# `flops_per_sample` (x tokens for sequence tasks); this constant serves stores without it.
FLOPS_PER_PARAM_PER_SAMPLE = 6
WILSON_Z = 1.959963984540054  # 95% two-sided normal quantile
OPS = ("<=", "<", ">=", ">")
COST_COLUMNS = ("steps_to_success", "samples_to_success", "flops_to_success")


@dataclass(frozen=True)
class Criterion:
    """A success predicate `metric op value` on one metric column."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Criterion:
        """Parse `test_error<=0.05` (spaces allowed).

        Raises:
            UsageError: the text is not `metric op number`.
        """
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", text)
        try:
            return cls(m.group(1), m.group(2), float(m.group(3)))
        except (AttributeError, ValueError):
            raise UsageError(f"bad success criterion {text!r}; expected METRIC OP VALUE, e.g. test_error<=0.1") from None


@dataclass(frozen=True)
class SweepInfo:
    """What analysis needs to know of a sweep: its axes, its parameters and its success criterion."""

    name: str
    axes: tuple[str, ...]
    parameters: tuple[str, ...]
    success: Criterion


def sweep_info(con: duckdb.DuckDBPyConnection, sweep: str) -> SweepInfo:
    """The latest submission of `sweep` in the store behind `con`.

    Raises:
        StoreError: the sweep is unknown.
    """
    rows = con.execute("SELECT axes, parameters, success_metric, success_op, success_value FROM sweeps "
                       "WHERE sweep = ?", [sweep]).fetchall()
    if not rows:
        names = [r[0] for r in con.execute("SELECT sweep FROM sweeps ORDER BY 1").fetchall()]
        raise StoreError(f"unknown sweep {sweep!r}; known: {', '.join(names) or 'none yet'}")
    axes, params, metric, op, value = rows[0]
    return SweepInfo(sweep, tuple(axes or ()), tuple(params or ()), Criterion(metric, op, value))


@contextmanager
def open_sweep(store: Store, sweep: str, success: str | None = None
               ) -> Iterator[tuple[duckdb.DuckDBPyConnection, SweepInfo, Criterion]]:
    """A connection restricted to `sweep`, its `SweepInfo`, and the success criterion to use:
    `success` text (e.g. `test_error<=0.05`) if given, else the sweep's own.

    Raises:
        StoreError: unknown sweep. UsageError: bad criterion text.
    """
    con = store.connect(sweep)
    try:
        info = sweep_info(con, sweep)
        yield con, info, Criterion.parse(success) if success else info.success
    finally:
        con.close()


def ident(name: str) -> str:
    """`name` quoted as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


CURVE_KEYS = ("trial_id", "attempt", "step", "samples", "wall_s")  # the metrics columns that are not metrics


def metric_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The metrics recorded in the store's curves."""
    return [c for c in columns(con, "metrics") if c not in CURVE_KEYS]


def costs_sql(con: duckdb.DuckDBPyConnection, criterion: Criterion, include_pruned: bool = False) -> str:
    """SQL selecting every non-failed trial with its cost to success under `criterion`.

    Columns: every column of `trials` except the stored costs, then `steps_to_success`,
    `samples_to_success`, `flops_to_success` (NULL when the criterion never held).

    Raises:
        UsageError: the criterion names a metric the store does not record, or a bad operator.
    """
    known = metric_names(con)
    if criterion.metric not in known:
        raise UsageError(f"unknown metric {criterion.metric!r}; recorded: {', '.join(known)}")
    if criterion.op not in OPS:
        raise UsageError(f"bad operator {criterion.op!r}; allowed: {', '.join(OPS)}")
    have = columns(con, "trials")
    keep = ", ".join(f"t.{ident(c)}" for c in have if c not in COST_COLUMNS)
    # the workers record FLOPs per example (x tokens for sequences); older stores only n_params
    per_sample = ("coalesce(t.flops_per_sample, " if "flops_per_sample" in have else "(") + \
        f"{FLOPS_PER_PARAM_PER_SAMPLE}::DOUBLE * t.n_params)"
    return f"""
        SELECT {keep}, s.step AS steps_to_success, s.samples AS samples_to_success,
               {per_sample} * s.samples AS flops_to_success
        FROM trials t LEFT JOIN (
            SELECT trial_id, min(step) AS step, arg_min(samples, step) AS samples FROM metrics
            WHERE {ident(criterion.metric)} {criterion.op} {_number(criterion.value)}
              AND isfinite({ident(criterion.metric)}) GROUP BY trial_id
        ) s USING (trial_id)
        WHERE t.status <> 'failed'{'' if include_pruned else " AND t.status <> 'pruned'"}"""


def cells_sql(con: duckdb.DuckDBPyConnection, axes: tuple[str, ...], criterion: Criterion,
              include_pruned: bool = False) -> str:
    """SQL of one row per cell: the axes, `n_seeds`, `successes`, `p_success` with its 95% Wilson
    interval `p_lo`/`p_hi`, and the median of each cost over the seeds that succeeded.

    (`n_seeds`, not `n`: sparse parity has an axis named `n`.)"""
    have = set(columns(con, "trials"))
    missing = [a for a in axes if a not in have]
    if missing:
        raise UsageError(f"unknown axis {missing[0]!r}; columns: {', '.join(sorted(have))}")
    keys = ", ".join(ident(a) for a in axes)
    z = WILSON_Z
    medians = ", ".join(f"median({c}) AS {c}" for c in COST_COLUMNS)
    return f"""
        WITH c AS ({costs_sql(con, criterion, include_pruned)}),
        g AS (SELECT {keys + ',' if keys else ''} count(*) AS n_seeds, count(steps_to_success) AS successes, {medians}
              FROM c {'GROUP BY ' + keys if keys else ''}),
        w AS (SELECT *, successes / n_seeds AS _p, n_seeds AS _n FROM g)
        SELECT * EXCLUDE (_p, _n), _p AS p_success,
               -- exact at p = 0 and p = 1, where the formula is off by rounding (1e-17)
               CASE WHEN _p = 0 THEN 0.0 ELSE (_p + {z * z} / (2 * _n) - {z} * sqrt(_p * (1 - _p) / _n + {z * z} / (4 * _n * _n))) / (1 + {z * z} / _n) END AS p_lo,
               CASE WHEN _p = 1 THEN 1.0 ELSE (_p + {z * z} / (2 * _n) + {z} * sqrt(_p * (1 - _p) / _n + {z * z} / (4 * _n * _n))) / (1 + {z * z} / _n) END AS p_hi
        FROM w {'ORDER BY ' + keys if keys else ''}"""


def _number(x: float) -> str:
    """A finite float as a SQL literal (the criterion's value; never user text)."""
    x = float(x)
    if x != x or x in (float("inf"), float("-inf")):
        raise UsageError(f"the success value must be a finite number, got {x}")
    return repr(x)


def trial_costs(store: Store, sweep: str, success: str | None = None) -> pa.Table:
    """Every non-failed trial of `sweep` with its cost to success (default: the sweep's criterion).

    Raises:
        StoreError: unknown sweep. UsageError: bad `success` text or metric.
    """
    with open_sweep(store, sweep, success) as (con, info, criterion):
        return con.sql(costs_sql(con, criterion)).to_arrow_table()


def cells(store: Store, sweep: str, axes: list[str] | None = None, success: str | None = None,
          include_pruned: bool = False) -> pa.Table:
    """Success statistics per cell of `sweep` (cells over `axes`, default the sweep's own axes).

    Returns:
        One row per cell: the axes, n_seeds, successes, p_success, p_lo, p_hi (95% Wilson interval),
        and the medians of steps_, samples_ and flops_to_success over the seeds that succeeded.
    Raises:
        StoreError: unknown sweep. UsageError: bad axis, metric or criterion.
    """
    with open_sweep(store, sweep, success) as (con, info, criterion):
        return con.sql(cells_sql(con, tuple(axes) if axes is not None else info.axes, criterion,
                                 include_pruned)).to_arrow_table()

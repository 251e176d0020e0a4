"""The Pareto frontier of a sweep: the cells that no other cell beats on every objective at once.

Cells are those of `analysis.cells` (one per grid point, over the seeds): success probability
with its 95% Wilson interval and the median costs to success (`median_steps_to_success`, ...).
An objective is one of those cell columns with a direction, `min` or `max`; a cost named as the
trials name it (`steps_to_success`) is its cell median. A *qualifying* cell (p_success >= `min_success_prob`)
is *dominated* when another qualifying cell of its group is at least as good on every objective
and strictly better on at least one; the frontier is every qualifying cell that is not dominated,
so exact ties are all kept.

The default objectives come from the sweep: its first numeric axis (`train_size` when it has one) and
the median of its cost (`cells.default_cost`: FLOPs when the trials record their size), both
minimized; a sweep with no numeric axis has the cost alone.

A NULL objective value is the worst value for its direction, worse than any number: a NULL
`train_size` is online training (unlimited data), a NULL median cost is a cell whose seeds never
succeeded. Two NULLs tie.

The check runs in DuckDB: each objective becomes its dense rank (1 = best, NULL ranked last), so
dominance is exact integer comparison whatever the column type, and the NOT EXISTS anti-join is
quadratic only within a group (about 1 s for 10^4 cells in one group).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import duckdb
import pyarrow as pa

from paretolab.analysis.cells import (NUMERIC, SweepInfo, cells_sql, columns, default_cost, ident,
                                      numeric_axes, open_sweep)
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import COST_COLUMNS, median_column

DIRECTIONS = ("min", "max")
PROBABILITIES = ("p_success", "p_lo", "p_hi")
# The statistics `cells_sql` adds to the axes: an axis of the same name would be confused with one.
CELL_STATS = ("n_seeds", "successes") + PROBABILITIES

Objective = tuple[str, str]


def parse_objectives(text: str) -> list[Objective]:
    """Parse `train_size,flops_to_success` or `train_size:min,p_success:max` (direction default min).

    Raises:
        UsageError: an empty item, a bad name, or a direction other than min/max.
    """
    out = []
    for item in text.split(","):
        name, _, direction = (part.strip() for part in item.partition(":"))
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"bad objective {item.strip()!r} in {text!r}; expected NAME or NAME:min|max, "
                             f"comma-separated, e.g. train_size,p_success:max")
        out.append((name, direction.lower() or "min"))
    return _checked(out)


def default_objectives(store: Store, sweep: str) -> list[Objective]:
    """The objectives `frontier` takes when none are named (module docstring).

    Raises:
        StoreError: unknown sweep.
    """
    with open_sweep(store, sweep) as (con, info, _):
        return sweep_objectives(con, info)


def sweep_objectives(con: duckdb.DuckDBPyConnection, info: SweepInfo) -> list[Objective]:
    """`default_objectives` on an open connection of the sweep."""
    return [(a, "min") for a in numeric_axes(con, info)[:1]] + [(median_column(default_cost(con)), "min")]


def frontier(store: Store, sweep: str, objectives: Sequence[Objective] | str | None = None,
             by: Sequence[str] | str | None = None, min_success_prob: float = 0.5, success: str | None = None,
             all_cells: bool = False) -> pa.Table:
    """The non-dominated cells of `sweep` over `objectives`, separately per `by` group.

    Args:
        objectives: (column, "min" | "max") pairs, or their text for `parse_objectives`. A column is
            an axis of the sweep, a median cost (median_steps_to_success, ..., or the cost's own
            name, steps_to_success, ...) or p_success, p_lo, p_hi. NULL is the worst value. None:
            the sweep's own (module docstring).
        by: axes whose every combination gets its own frontier (a comma-separated string is split);
            None: one frontier over all cells.
        min_success_prob: only cells with p_success >= this take part (and can dominate).
        success: a criterion like `test_error<=0.05` recomputed from the curves; default the sweep's.
        all_cells: return every cell, not only the frontier (for plots).
    Returns:
        The cell columns of `analysis.cells` (median_steps_to_success, ...) plus the boolean
        `on_frontier`, ordered by group (NULLs
        last), then by the objectives best first (NULLs last), then by the other axes.
    Raises:
        StoreError: unknown sweep. UsageError: an unknown or non-numeric objective, a bad direction,
        an unknown `by` axis, `min_success_prob` outside [0, 1], or a bad criterion.
    """
    if isinstance(objectives, str):
        objectives = parse_objectives(objectives)
    elif objectives is not None:
        objectives = _checked(objectives)
    if not 0 <= min_success_prob <= 1:
        raise UsageError(f"min_success_prob must be in [0, 1], got {min_success_prob}")
    with open_sweep(store, sweep, success) as (con, info, criterion):
        objectives = objectives or sweep_objectives(con, info)
        clash = [a for a in info.axes if a in CELL_STATS]
        if clash:
            raise UsageError(f"axis {clash[0]!r} has the name of a cell statistic ({', '.join(CELL_STATS)})")
        con.execute(f"CREATE TEMP TABLE _cells AS {cells_sql(con, info.axes, criterion)}")
        groups = list(info.grouped(_by_axes(by, info.axes)))
        _check_columns(con, objectives, info.axes)
        sql = frontier_sql(columns(con, "_cells"), info.axes, objectives, groups, all_cells)
        return con.sql(sql, params=[min_success_prob]).to_arrow_table()


def frontier_sql(cell_columns: Sequence[str], axes: Sequence[str], objectives: Sequence[Objective],
                 groups: Sequence[str], all_cells: bool) -> str:
    """SQL over the table `_cells` (one parameter: min_success_prob) for `frontier`; names are checked."""
    ranks = [f"dense_rank() OVER (ORDER BY {ident(c)} {'ASC' if d == 'min' else 'DESC'} NULLS LAST) AS _r{i}"
             for i, (c, d) in enumerate(objectives)]
    group = f"dense_rank() OVER (ORDER BY {', '.join(ident(g) + ' ASC NULLS LAST' for g in groups)})" if groups else "1"
    # With every rank at least as good, a smaller rank sum means strictly better on one objective.
    dominates = " AND ".join([f"b._r{i} <= a._r{i}" for i in range(len(objectives))]
                             + [" + ".join(f"b._r{i}" for i in range(len(objectives))) + " < "
                                + " + ".join(f"a._r{i}" for i in range(len(objectives)))])
    rest = [ident(a) + " ASC NULLS LAST" for a in axes if a not in groups]
    order = ", ".join(["_g"] + [f"_r{i}" for i in range(len(objectives))] + rest)
    return f"""
        WITH r AS (SELECT *, p_success >= ? AS _ok, {group} AS _g, {', '.join(ranks)} FROM _cells),
        q AS (SELECT * FROM r WHERE _ok),
        f AS (SELECT *, _ok AND NOT EXISTS (SELECT 1 FROM q b WHERE b._g = a._g AND {dominates}) AS on_frontier
              FROM r a)
        SELECT {', '.join(ident(c) for c in cell_columns)}, on_frontier FROM f
        {'' if all_cells else 'WHERE on_frontier'} ORDER BY {order}"""


def _checked(objectives: Sequence[Objective]) -> list[Objective]:
    """The objectives with each cost named as its cell statistic (`median_steps_to_success`)."""
    out = [tuple(o) for o in objectives]
    out = [(median_column(o[0]), *o[1:]) if o and o[0] in COST_COLUMNS else o for o in out]
    if not out:
        raise UsageError("no objectives; name at least one, e.g. train_size,flops_to_success")
    for o in out:
        if len(o) != 2 or o[1] not in DIRECTIONS:
            raise UsageError(f"bad objective {o!r}; expected (name, direction) with direction one of "
                             f"{', '.join(DIRECTIONS)}")
    names = [name for name, _ in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UsageError(f"objective {twice[0]!r} is named more than once")
    return out


def _by_axes(by: Sequence[str] | str | None, axes: Sequence[str]) -> list[str]:
    if by is None:
        return []
    names = [b.strip() for b in by.split(",")] if isinstance(by, str) else list(by)
    for name in names:
        if name not in axes:
            raise UsageError(f"unknown --by axis {name!r}; axes of the sweep: {', '.join(axes) or 'none'}")
    return list(dict.fromkeys(names))


def _check_columns(con: duckdb.DuckDBPyConnection, objectives: Sequence[Objective], axes: Sequence[str]) -> None:
    allowed = list(axes) + [median_column(c) for c in COST_COLUMNS] + list(PROBABILITIES)
    types = {r[0]: r[1] for r in con.execute("DESCRIBE _cells").fetchall()}
    for name, _ in objectives:
        if name not in allowed:
            raise UsageError(f"unknown objective {name!r}; allowed: {', '.join(allowed)} (a cost's own name, "
                             f"e.g. steps_to_success, is its median)")
        if not NUMERIC.fullmatch(types[name]):
            raise UsageError(f"objective {name!r} is not numeric ({types[name]}); it can be a --by axis instead")

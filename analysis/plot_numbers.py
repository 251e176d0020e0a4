"""The numbers a figure of `plots` draws, computed from the store (every query), apart from the
drawing (`plots.draw`, which reads no store).

`plots.plot_frontier(...)` is `draw_frontier(frontier_numbers(...))`, and so for the phase
diagram and luck. The numbers are plain values in a frozen dataclass: `paretolab serve` computes
them in its own process with DuckDB, answers them as JSON (the data behind a figure of the page),
and sends them, a few KB pickled, to the processes that draw the figure; the CLI draws them at
once. The choices a caller left out (axes, groupings, the cost) are filled in from the sweep here,
so a drawing needs nothing but its numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paretolab.analysis.cells import COMPARED, check_axes, default_cost, numeric_axes, open_sweep
from paretolab.analysis.labels import Labels, sweep_labels
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import COST_COLUMNS, MEDIAN_PREFIX, median_column

AxisNames = Sequence[str] | str | None


@dataclass(frozen=True)
class FrontierNumbers:
    """Every cell at its median cost (`cost_column`) with the quartiles over its seeds that
    succeeded (`<y>_q1`, `<y>_q3`) and whether it is on the frontier (`on_frontier`).

    `x` is None where the sweep has no numeric axis (the cells are then empty); `stairs` are the
    axes one staircase is drawn per combination of (in a comparison, the sweep)."""

    sweep: str | list[str]
    x: str | None
    y: str
    by: tuple[str, ...]
    facet: str | None
    min_success_prob: float
    axes: tuple[str, ...]
    stairs: tuple[str, ...]
    labels: Labels
    cells: list[dict]

    @property
    def cost_column(self) -> str:
        """The cells' column of `y`: a cost's median (`median_steps_to_success`), else `y` itself."""
        return median_column(self.y) if self.y in COST_COLUMNS else self.y


@dataclass(frozen=True)
class PhaseNumbers:
    """The success probability per cell over `x` and `y` (a heat map), or along `x` per
    combination of `by` (lines; `y` None); `x` None where the sweep has no axis."""

    sweep: str | list[str]
    x: str | None
    y: str | None
    by: tuple[str, ...]
    facet: str | None
    labels: Labels
    cells: list[dict]


@dataclass(frozen=True)
class LuckNumbers:
    """Best of k seeds per combination of `by` (and `facet`): the expected `cost` to the first
    success and the probability of one, against k."""

    sweep: str | list[str]
    cost: str
    by: tuple[str, ...]
    facet: str | None
    rows: list[dict]


def frontier_numbers(store: Store, sweep: str, x: str | None = None, y: str | None = None, by: AxisNames = None,
                     min_success_prob: float = 0.5, success: str | None = None,
                     facet: str | None = None) -> FrontierNumbers:
    """What `plots.plot_frontier` draws; its arguments and defaults.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, objective or criterion.
    """
    from paretolab.analysis.frontier import frontier

    with open_sweep(store, sweep) as (con, info, _):
        if x is not None:  # named as an axis the cells are drawn along, not as an objective of `frontier`
            check_axes(con, info, [x])
        x = x or next(iter(a for a in numeric_axes(con, info) if a != facet), None)
        y = _cost_named(y) or default_cost(con)
        facet = checked_facet(con, info, facet, (x,))
        by = lines_by(con, info, by, leave_out=(x, facet))
        labels, axes, stairs = sweep_labels(con, info), info.axes, info.grouped(())
    cells: list[dict] = []
    if x is not None:
        cells = frontier(store, sweep, objectives=[(x, "min"), (y, "min")], by=[facet] if facet else None,
                         min_success_prob=min_success_prob, success=success, all_cells=True).to_pylist()
        spread = _quartiles(store, sweep, axes, y, success)
        for r in cells:
            r[f"{y}_q1"], r[f"{y}_q3"] = spread.get(tuple(r[a] for a in axes), (None, None))
    return FrontierNumbers(sweep, x, y, by, facet, min_success_prob, tuple(axes), tuple(stairs), labels, cells)


def phase_numbers(store: Store, sweep: str, x: str | None = None, y: str | None = None, success: str | None = None,
                  by: AxisNames = None, facet: str | None = None) -> PhaseNumbers:
    """What `plots.plot_phase` draws; its arguments and defaults.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis or criterion, or both `y` and `by`.
    """
    from paretolab.analysis.cells import cells

    if x is not None and x == y:
        raise UsageError(f"the phase diagram needs two different axes, got {x!r} twice")
    with open_sweep(store, sweep) as (con, info, _):
        by = lines_by(con, info, by, default=())
        facet = checked_facet(con, info, facet, (x, y, *by))
        if facet is None and info.compared and COMPARED not in (x, y, *by):
            facet = COMPARED
        named = check_axes(con, info, [a for a in (x, y, facet, *by) if a is not None])
        labels = sweep_labels(con, info)
    if by and y:
        raise UsageError("plot phase draws a heat map over --x and --y, or lines along --x, one per --by; not both")
    rest = [a for a in info.leading_axes() if a not in named]
    x = x or (rest.pop(0) if rest else None)
    y = y or (rest.pop(0) if rest and x is not None and not by else None)
    table = cells(store, sweep, axes=[a for a in (facet, *by, x, y) if a is not None], success=success).to_pylist()
    return PhaseNumbers(sweep, x, y, tuple(by), facet, labels, table)


def luck_numbers(store: Store, sweep: str, cost: str = "steps_to_success", by: AxisNames = None,
                 success: str | None = None, facet: str | None = None) -> LuckNumbers:
    """What `plots.plot_luck` draws; its arguments and defaults.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, cost or criterion.
    """
    from paretolab.analysis.luck import luck

    with open_sweep(store, sweep) as (con, info, _):
        facet = checked_facet(con, info, facet, ())
        by = lines_by(con, info, by, leave_out=(facet,))
    table = luck(store, sweep, cost=cost, success=success, axes=[a for a in (facet, *by) if a]).to_pylist()
    return LuckNumbers(sweep, cost, tuple(by), facet, table)


def _cost_named(y: str | None) -> str | None:
    """`y` with a cost's median (`median_steps_to_success`) named as the cost it is the median of."""
    return y.removeprefix(MEDIAN_PREFIX) if y and y.removeprefix(MEDIAN_PREFIX) in COST_COLUMNS else y


def _quartiles(store: Store, sweep: str, axes: tuple[str, ...], cost: str, success: str | None) -> dict:
    """{cell: (first, third quartile of `cost` over the seeds that succeeded)}, computed in DuckDB
    (linear interpolation, as numpy's percentile: on 10^5 trials the rows copied into Python and
    grouped there took seconds)."""
    from paretolab.analysis.cells import costs_sql, ident

    if cost not in COST_COLUMNS:
        return {}
    with open_sweep(store, sweep, success) as (con, _, criterion):
        keys = "".join(f"{ident(a)}, " for a in axes)
        rows = con.sql(f"""
            SELECT {keys}quantile_cont(_c, 0.25) AS _q1, quantile_cont(_c, 0.75) AS _q3
            FROM (SELECT *, {ident(cost)}::DOUBLE AS _c FROM ({costs_sql(con, criterion)}))
            WHERE _c IS NOT NULL AND isfinite(_c) GROUP BY ALL""").fetchall()
    return {tuple(r[:-2]): (float(r[-2]), float(r[-1])) for r in rows}


def lines_by(con, info, by: AxisNames, leave_out: Sequence[str | None] = (), default=None) -> tuple[str, ...]:
    """The axes to draw one line per combination of: `by` as given (checked), else `default`, else
    the sweep's axes other than `leave_out`."""
    if by is None:
        return tuple(default) if default is not None else tuple(a for a in info.axes if a not in leave_out)
    names = [b.strip() for b in by.split(",") if b.strip()] if isinstance(by, str) else list(by)
    return check_axes(con, info, names)


def checked_facet(con, info, facet: str | None, others: Sequence[str | None]) -> str | None:
    """`facet` checked: an axis of the sweep other than `others` (None: no facets).

    Raises:
        UsageError: an unknown axis, or one the plot already draws along.
    """
    if facet is None:
        return None
    check_axes(con, info, [facet])
    if facet in others:
        raise UsageError(f"--facet {facet!r} is already drawn along an axis of the plot; facet by another axis")
    return facet

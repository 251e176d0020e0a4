"""Per-trial cost to success and per-cell success statistics, computed in DuckDB.

A *cell* is one grid point without its seed: the trials that share every axis value of the sweep
and differ only in seed. Costs are recomputed from the curves, so a stricter or looser success
criterion than the one the sweep ran with can be asked for (trials that stopped early at the
sweep's own criterion cannot show a later success: they count as not succeeding). A trial has a
cost (`steps_to_success`, ...); a cell has the median of its seeds' costs, and says so
(`median_steps_to_success`, ...).

Trials whose last attempt `failed` (raised) are left out: they are errors, not outcomes. So are
trials an adaptive search `pruned` (stopped early as hopeless), unless `include_pruned` asks for
them (then they count as seeds that did not succeed, unless their curve met the criterion).
A `diverged` trial succeeded if its curve met the criterion before the loss became NaN/inf (as the
workers record it); NaN and infinite metric values never meet a criterion.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from paretolab.store import Store

from paretolab.store.store import columns, held, ident
from paretolab.vocabulary.errors import StoreError, UsageError
from paretolab.vocabulary.schema import COST_COLUMNS, CURVE_KEYS, FLOPS_PER_PARAM_PER_TOKEN, median_column
from paretolab.vocabulary.stats import wilson_sql
from paretolab.vocabulary.success import OPS, Success

# DuckDB column types an objective, a fit or a log axis can take; "NULL" is a column no file gave a value yet.
NUMERIC = re.compile(r'(U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)|FLOAT|DOUBLE|DECIMAL\(.*\)|"NULL")')
# The data axis comes first where a sweep has one: a frontier of data against compute puts the
# training-set size (NULL = online) on x.
DATA_AXIS = "train_size"
COMPARED = "sweep"  # the column that tells the sweeps of a comparison apart (`compared`)


@dataclass(frozen=True)
class SweepInfo:
    """What analysis needs to know of a sweep: its axes, its parameters and its success criterion."""

    name: str
    axes: tuple[str, ...]
    parameters: tuple[str, ...]
    success: Success
    compared: bool = False  # several sweeps side by side, told apart by the `sweep` column (`compared`)

    def leading_axes(self) -> tuple[str, ...]:
        """The axes in the order analysis takes its defaults from: `train_size` first when the sweep
        has it, then the others as the spec lists them (a frontier's x, a phase diagram's x and y);
        in a comparison, `sweep` last: it groups, it is not a coordinate."""
        return tuple(sorted(self.axes, key=lambda a: (a == COMPARED and self.compared, a != DATA_AXIS)))

    def grouped(self, by: Sequence[str]) -> tuple[str, ...]:
        """`by` with the `sweep` column first in a comparison: every analysis keeps the sweeps apart."""
        return tuple(dict.fromkeys((COMPARED, *by) if self.compared else by))

    def names(self) -> tuple[str, ...]:
        """What a user may name as an axis: the sweep's axes, then its other parameters."""
        return tuple(dict.fromkeys((*self.axes, *self.parameters)))


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
    return SweepInfo(sweep, tuple(axes or ()), tuple(params or ()), Success(metric, op, value))


@contextmanager
def open_sweep(store: Store, sweep: str | Sequence[str], success: str | None = None
               ) -> Iterator[tuple[duckdb.DuckDBPyConnection, SweepInfo, Success]]:
    """A connection restricted to `sweep`, its `SweepInfo`, and the success criterion to use:
    `success` text (e.g. `test_error<=0.05`) if given, else the sweep's own.

    `sweep` may name several sweeps (a list, or `a,b` where no sweep is named `a,b`): their trials
    are compared side by side, with a `sweep` column in `trials` that is the first of the axes
    the analyses group by (`compared`).

    Raises:
        StoreError: unknown sweep. UsageError: bad criterion text, or sweeps with different criteria
            and no `success` to compare them by.
    """
    if isinstance(sweep, str):
        names = sweep_names(store, sweep)
    else:
        names = list(dict.fromkeys(sweep))
    if len(names) == 1:
        con = store.connect(names[0])
    else:
        con = store.connect()
    try:
        info = sweep_info(con, names[0]) if len(names) == 1 else compared(con, names, success)
        fill_missing(con, info)
        criterion = Success.parse(success) if success else info.success
        check_metric(con, info, criterion.metric)
        yield con, info, criterion
    finally:
        con.close()


def comparing(store: Store, sweep: str | Sequence[str]) -> bool:
    """Whether `sweep` names several sweeps (see `open_sweep`)."""
    return len(sweep_names(store, sweep) if isinstance(sweep, str) else set(sweep)) > 1


def sweep_names(store: Store, text: str) -> list[str]:
    """The sweeps `text` names: itself if a sweep has that name, else its comma-separated parts."""
    if "," not in text:
        return [text]
    known = set(store.query("SELECT sweep FROM sweeps").column("sweep").to_pylist())
    if text in known:
        return [text]
    return list(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))


def compared(con: duckdb.DuckDBPyConnection, names: list[str], success: str | None) -> SweepInfo:
    """Restrict `con` to the trials of the sweeps `names`, with their sweep as a column of `trials`
    (a trial two of them share appears once per sweep), and the `SweepInfo` of the comparison: the
    axes `sweep`, then every sweep's axes in order; the parameters of all; their success criterion.

    Raises:
        StoreError: an unknown sweep. UsageError: different success criteria and no `success`.
    """
    infos = [sweep_info(con, n) for n in names]
    criteria = {(i.success.metric, i.success.op, i.success.value) for i in infos}
    if len(criteria) > 1 and not success:
        shown_ = "; ".join(f"{i.name}: {i.success.metric} {i.success.op} {i.success.value:g}" for i in infos)
        raise UsageError(f"the sweeps have different success criteria ({shown_}); "
                         "pass --success to compare them by one, e.g. --success 'test_error<=0.1'")
    if COMPARED in columns(con, "trials"):
        raise UsageError("a parameter named 'sweep' hides which sweep a trial belongs to; compare these sweeps one by one")
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    listed = ", ".join("?" for _ in names)
    con.execute(f"CREATE TEMP TABLE _compared AS SELECT DISTINCT sweep, trial_id FROM {ident(db)}.main.sweep_trials "
                f"WHERE sweep IN ({listed})", names)
    con.execute(f"CREATE TEMP VIEW trials AS SELECT c.sweep, t.* FROM {ident(db)}.main.trials t "
                "JOIN _compared c USING (trial_id)")
    con.execute(f"CREATE TEMP VIEW metrics AS SELECT * FROM {ident(db)}.main.metrics "
                "WHERE trial_id IN (SELECT trial_id FROM _compared)")
    axes = tuple(dict.fromkeys(a for i in infos for a in i.axes))
    params = tuple(dict.fromkeys(p for i in infos for p in i.parameters))
    return SweepInfo(",".join(names), (COMPARED, *axes), params, infos[0].success, compared=True)


def fill_missing(con: duckdb.DuckDBPyConnection, info: SweepInfo) -> None:
    """Until a sweep's first trial and curve are stored, its parameters are not columns of `trials`
    (nor its success metric of `metrics`) in a store that holds nothing else: add them as NULL
    columns, so that every analysis of a sweep with no rows yet is empty rather than an error."""
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    wanted = {"trials": info.names(), "metrics": (info.success.metric,) if info.success.metric else ()}
    for view, names in wanted.items():
        have = set(columns(con, view))
        missing = [n for n in names if n not in have]
        if missing:  # a temporary view shadows the store's view of the same name in this connection
            nulls = ", ".join(f"NULL::DOUBLE AS {ident(n)}" for n in missing)
            con.execute(f"CREATE TEMP VIEW {view} AS SELECT *, {nulls} FROM {ident(db)}.main.{view}")


def check_axes(con: duckdb.DuckDBPyConnection, info: SweepInfo, names) -> tuple[str, ...]:
    """`names` if each is an axis or parameter of the sweep (any trials column for a sweep whose row
    lists no parameters, as older stores' rows do).

    Raises:
        UsageError: a name that is neither, naming the sweep's axes and other parameters.
    """
    have = set(columns(con, "trials"))
    known = [n for n in info.names() if n in have] if info.parameters else sorted(have)
    for name in names:
        if name not in known:
            others = [n for n in known if n not in info.axes]
            raise UsageError(f"unknown axis {name!r}; axes of the sweep {info.name!r}: "
                             f"{', '.join(info.axes) or 'none'}; other parameters: {', '.join(others) or 'none'}")
    return tuple(names)


def check_metric(con: duckdb.DuckDBPyConnection, info: SweepInfo, name: str) -> str:
    """`name` if it is the sweep's success metric or a metric the sweep reported.

    Raises:
        UsageError: another name (a metric only other sweeps of the store reported, too), naming
            the sweep's metrics.
    """
    if name != info.success.metric:
        reported = reported_metrics(con)
        if name not in reported:
            raise UsageError(f"unknown metric {name!r}; recorded: {', '.join(reported) or 'none yet'}")
    return name


def numeric_axes(con: duckdb.DuckDBPyConnection, info: SweepInfo, positive: bool = False) -> tuple[str, ...]:
    """The sweep's numeric axes in `leading_axes` order; with `positive`, only those whose every value
    is > 0 (a log axis, a power-law fit, a boundary interpolated in log10)."""
    types = {r[0]: r[1] for r in con.execute("DESCRIBE trials").fetchall()}
    out = [a for a in info.leading_axes() if a in types and NUMERIC.fullmatch(types[a])]
    if positive and out:
        lows = con.execute("SELECT " + ", ".join(f"min({ident(a)})" for a in out) +
                           " FROM trials WHERE status <> 'failed'").fetchall()[0]
        out = [a for a, low in zip(out, lows) if low is None or low > 0]
    return tuple(out)


def default_cost(con: duckdb.DuckDBPyConnection) -> str:
    """The cost a frontier is drawn over: `flops_to_success` when the trials record their size (FLOPs
    per sample or a parameter count), else `samples_to_success` when the curves count samples,
    else `steps_to_success` (a function that reports only steps)."""
    have = columns(con, "trials")
    sized = [c for c in ("flops_per_sample", "n_params") if c in have]
    if sized and con.execute("SELECT EXISTS (SELECT 1 FROM trials WHERE " +
                             " OR ".join(f"{ident(c)} IS NOT NULL" for c in sized) + ")").fetchall()[0][0]:
        return "flops_to_success"
    if con.execute("SELECT EXISTS (SELECT 1 FROM metrics WHERE samples IS NOT NULL)").fetchall()[0][0]:
        return "samples_to_success"
    return "steps_to_success"


def reported_metrics(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The metrics the sweep behind `con` reported at least once (a store shared by several sweeps
    has a column for every metric any of them reported)."""
    names = metric_names(con)
    if not names:
        return []
    counts = con.execute("SELECT " + ", ".join(f"count({ident(n)})" for n in names) + " FROM metrics").fetchall()[0]
    return [n for n, c in zip(names, counts) if c]




def metric_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The metrics recorded in the store's curves."""
    return [c for c in columns(con, "metrics") if c not in CURVE_KEYS]


def costs_sql(con: duckdb.DuckDBPyConnection, criterion: Success, include_pruned: bool = False) -> str:
    """SQL selecting every non-failed trial with its cost to success under `criterion`.

    Columns: every column of `trials` except the stored costs, then `steps_to_success`,
    `samples_to_success`, `flops_to_success` (NULL when the criterion never held). The first
    successes are read from the database's memo of them where it holds one (`curve_memo.memoize`),
    else found in the curves.

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
    sizes = (["t.flops_per_sample"] if "flops_per_sample" in have else []) + \
        ([f"{FLOPS_PER_PARAM_PER_TOKEN}::DOUBLE * t.n_params"] if "n_params" in have else [])
    per_sample = f"coalesce({', '.join(sizes)})" if sizes else "NULL::DOUBLE"
    memo = successes_table(criterion)
    return f"""
        SELECT {keep}, s.step AS steps_to_success, s.samples AS samples_to_success,
               {per_sample} * s.samples AS flops_to_success
        FROM trials t LEFT JOIN {f'main.{memo}' if held(con, memo) else f'({successes_sql(criterion)})'} s USING (trial_id)
        WHERE t.status <> 'failed'{'' if include_pruned else " AND t.status <> 'pruned'"}"""


def successes_sql(criterion: Success) -> str:
    """SQL of one row per trial whose curve (`metrics`) met `criterion`: `trial_id`, the first
    `step` at which it held and the `samples` seen then."""
    metric = ident(criterion.metric)
    return (f"SELECT trial_id, min(step) AS step, arg_min(samples, step) AS samples FROM metrics "
            f"WHERE {metric} {criterion.op} {number_sql(criterion.value)} AND isfinite({metric}) GROUP BY trial_id")


def successes_table(criterion: Success) -> str:
    """The name of a database's memo of `successes_sql(criterion)` (`curve_memo.memoize`)."""
    key = f"{criterion.metric}\0{criterion.op}\0{float(criterion.value)!r}".encode()
    return f"_successes_{hashlib.blake2b(key, digest_size=6).hexdigest()}"


def cells_sql(con: duckdb.DuckDBPyConnection, axes: tuple[str, ...], criterion: Success,
              include_pruned: bool = False) -> str:
    """SQL of one row per cell: the axes, `n_seeds`, `successes`, `p_success` with its 95% Wilson
    interval `p_lo`/`p_hi`, and the median of each cost over the seeds that succeeded
    (`median_steps_to_success`, `median_samples_to_success`, `median_flops_to_success`).

    (`n_seeds`, not `n`: sparse parity has an axis named `n`.) `axes` must be checked columns."""
    keys = ", ".join(ident(a) for a in axes)
    p_lo, p_hi = wilson_sql("_p", "_n")
    medians = ", ".join(f"median({c}) AS {median_column(c)}" for c in COST_COLUMNS)
    return f"""
        WITH c AS ({costs_sql(con, criterion, include_pruned)}),
        g AS (SELECT {keys + ',' if keys else ''} count(*) AS n_seeds, count(steps_to_success) AS successes, {medians}
              FROM c {'GROUP BY ' + keys if keys else ''}),
        w AS (SELECT *, successes / n_seeds AS _p, n_seeds AS _n FROM g)
        SELECT * EXCLUDE (_p, _n), _p AS p_success,
               {p_lo} AS p_lo,
               {p_hi} AS p_hi
        FROM w {'ORDER BY ' + keys if keys else ''}"""


def number_sql(x: float) -> str:
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
        and median_steps_to_success, median_samples_to_success, median_flops_to_success: the
        medians of the costs over the seeds that succeeded.
    Raises:
        StoreError: unknown sweep. UsageError: bad axis, metric or criterion.
    """
    with open_sweep(store, sweep, success) as (con, info, criterion):
        axes = check_axes(con, info, axes) if axes is not None else info.axes
        return con.sql(cells_sql(con, axes, criterion, include_pruned)).to_arrow_table()

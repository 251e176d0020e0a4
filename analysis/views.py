"""Ready-made views for `paretolab query --sweep S`: `cells`, `frontier` and `transitions`.

They are computed for the sweep named, with its own axes and success criterion, and only when the
SQL mentions them (each scans the curves). `frontier` is over the sweep's default objectives
(`frontier.default_objectives`: its first numeric axis, train_size when it has one, and its cost's
cell median, `median_flops_to_success` when the trials record their size).
"""

from __future__ import annotations

import re

import duckdb
import pyarrow as pa

from paretolab.analysis.cells import cells_sql, columns, fill_missing, sweep_info
from paretolab.store import Store, check_read_only

READY = ("cells", "frontier", "transitions")


def query(store: Store, sql: str, sweep: str | None = None) -> pa.Table:
    """Run `sql` over the store's views, plus `cells`, `frontier`, `transitions` when `sweep` is given.

    Raises:
        StoreError: bad SQL, not one read-only statement, unknown sweep, or no store.
    """
    check_read_only(sql)
    wanted = [v for v in READY if sweep and re.search(rf"\b{v}\b", sql, re.I)]
    if not wanted:
        return store.query(sql, sweep=sweep)

    def run(con: duckdb.DuckDBPyConnection) -> pa.Table:
        _add(con, sweep, wanted)
        return con.sql(sql).to_arrow_table()

    return store.read(run, sweep)


def _add(con: duckdb.DuckDBPyConnection, sweep: str, wanted: list[str]) -> None:
    from paretolab.analysis.frontier import frontier_sql, sweep_objectives
    from paretolab.analysis.phases import transition_metrics, transitions_sql

    info = sweep_info(con, sweep)
    fill_missing(con, info)
    if "cells" in wanted or "frontier" in wanted:
        con.execute(f"CREATE TEMP TABLE cells AS {cells_sql(con, info.axes, info.success)}")
    if "frontier" in wanted:
        con.execute("CREATE TEMP VIEW _cells AS SELECT * FROM cells")
        sql = frontier_sql(columns(con, "cells"), info.axes, sweep_objectives(con, info), [], False)
        con.execute(f"CREATE TEMP TABLE frontier AS {sql}", [0.5])
    if "transitions" in wanted:
        sql, params = transitions_sql(con, info, transition_metrics(con, info.success, strict=False))
        con.execute(f"CREATE TEMP TABLE transitions AS {sql}", params)

"""What a long-lived reader of the store keeps of the curves between its snapshots.

Most analyses price trials by their first success (`cells.costs_sql`), and `status` counts the
trials that have curves but no result: each is a scan of every metric row (10^7 on the large
benchmark store). A reader that answers many queries of a store that keeps growing (`paretolab
serve`) summarizes each metrics file once instead: one row per trial and attempt in it, with the
first step (and samples) at which each success criterion held. A store's files never change once
written (a compaction writes a new one), so a summary holds as long as its file is live, and a new
snapshot of the store costs a scan of its new files only.

`memoize` builds, in a connection's database, the tables that `cells.costs_sql` and
`status.status` read where a database holds them:

- `cells.successes_table(criterion)`: `successes_sql`'s rows (the first success of each trial's
  curve that counts: the attempt of its result, else its newest);
- `CURVE_TRIALS`: every trial id with a curve row, of any attempt (what `metrics_all` holds).
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from paretolab.analysis.cells import number_sql, successes_table
from paretolab.store.store import held, ident
from paretolab.vocabulary.success import OPS, Success

CURVE_TRIALS = "_curve_trials"


def summarize(con: duckdb.DuckDBPyConnection, path: str, criteria: Sequence[Success]) -> pa.Table:
    """One row per trial and attempt of the metrics file at `path` (which `con` may read):
    `trial_id`, `attempt`, and per criterion i `step_i`, `samples_i`, its first success in this
    file (NULL where it did not hold)."""
    source = f"read_parquet('{path.replace(chr(39), chr(39) * 2)}')"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    samples = "samples" if "samples" in have else "NULL::BIGINT"
    parts = []
    for i, c in enumerate(criteria):
        if c.metric in have and c.op in OPS:
            m = ident(c.metric)
            held = f"{m} {c.op} {number_sql(c.value)} AND isfinite({m})"
            parts.append(f"min(step) FILTER ({held}) AS step_{i}, arg_min({samples}, step) FILTER ({held}) AS samples_{i}")
        else:
            parts.append(f"NULL::BIGINT AS step_{i}, NULL::BIGINT AS samples_{i}")
    select = ", ".join(["trial_id", "attempt", *parts])
    return con.sql(f"SELECT {select} FROM {source} GROUP BY trial_id, attempt").to_arrow_table()


def memoize(con: duckdb.DuckDBPyConnection, summaries: Sequence[pa.Table], criteria: Sequence[Success]) -> None:
    """Build the module's tables in `con`'s database from the `summarize` tables of every live
    metrics file of its snapshot, summarized for `criteria`. The first success of a trial is taken
    over the attempt `metrics` shows (`store.VIEWS`): its result's, else its newest."""
    steps = ", ".join(f"step_{i}, samples_{i}" for i in range(len(criteria)))
    schema = pa.schema([("trial_id", pa.string()), ("attempt", pa.int64()),
                        *((f"{k}_{i}", pa.int64()) for i in range(len(criteria)) for k in ("step", "samples"))])
    rows = pa.concat_tables([t.select(schema.names).cast(schema) for t in summaries]) if summaries else schema.empty_table()
    con.register("_summaries", rows)
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS main.{CURVE_TRIALS} AS SELECT DISTINCT trial_id FROM _summaries")
        counted = ("SELECT s.trial_id, coalesce(max(t.attempt), max(s.attempt)) AS attempt FROM _summaries s "
                   "LEFT JOIN trials t USING (trial_id) GROUP BY s.trial_id")
        con.execute(f"CREATE TEMP TABLE _counted AS SELECT s.trial_id, {steps} FROM _summaries s "
                    f"JOIN ({counted}) a ON s.trial_id = a.trial_id AND s.attempt = a.attempt")
        for i, c in enumerate(criteria):
            con.execute(f"CREATE TABLE IF NOT EXISTS main.{successes_table(c)} AS SELECT trial_id, min(step_{i}) AS step, "
                        f"arg_min(samples_{i}, step_{i}) AS samples FROM _counted WHERE step_{i} IS NOT NULL GROUP BY trial_id")
        con.execute("DROP TABLE _counted")
    finally:
        con.unregister("_summaries")


def curve_trials_sql(con: duckdb.DuckDBPyConnection) -> str:
    """SQL of every trial id with a curve row (any attempt): the memo where `con`'s database holds it."""
    return f"main.{CURVE_TRIALS}" if held(con, CURVE_TRIALS) else "(SELECT DISTINCT trial_id FROM metrics_all)"


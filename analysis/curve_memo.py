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
- `CURVE_TRIALS`: every trial id with a curve row, of any attempt (what `metrics_all` holds);
- `POOL` and `POOL_METRICS`: the pool of curves that figures drawn from a sample of curves (bands
  over seeds, transitions) draw from, with its rows of the attempt that counts: the first
  `POOL_SIZE` trials of each sweep by a hash of their ids (every trial of a smaller sweep; fewer
  where curves are long, `pool_ids`). The pool changes only when a sweep is submitted (or its
  curves grow past a size), so the rows each file holds of it are kept with the file's summary;
  drawing 256 curves per group from the 10^7 rows took 0.25-0.35 s of decoding every column of
  every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from paretolab.analysis.cells import number_sql, successes_table
from paretolab.store.store import held, ident
from paretolab.vocabulary.success import OPS, Success

CURVE_TRIALS = "_curve_trials"
POOL_SIZE = 4096  # trials per sweep in the pool of curves, at most
POOL_ROWS = 1_000_000  # rows the pool holds, about: longer curves make it fewer trials (halved until they fit)
POOL_LEAST = 256  # trials per sweep in the pool, at least
POOL = "_pool"
POOL_METRICS = "_pool_metrics"


def pool_size(con: duckdb.DuckDBPyConnection) -> int:
    """Trials per sweep in the pool (module docstring) of the store behind `con`: `POOL_SIZE`,
    halved while the rows a trial has on average would make the pool hold more than `POOL_ROWS`
    (a power of two of them, so that a growing store changes it seldom), `POOL_LEAST` at least."""
    rows, trials = con.execute("SELECT (SELECT count(*) FROM metrics_all), "
                               "(SELECT count(DISTINCT trial_id) FROM sweep_trials)").fetchall()[0]
    size = POOL_SIZE
    while size > POOL_LEAST and size * rows / max(trials, 1) > POOL_ROWS:
        size //= 2
    return size


def pool_ids(con: duckdb.DuckDBPyConnection, size: int | None = None) -> pa.Table:
    """The trial ids of the pool of every sweep of the store behind `con`: the first `size`
    (default `pool_size`) of each by a hash of their ids."""
    size = pool_size(con) if size is None else size
    return con.sql(f"SELECT DISTINCT trial_id FROM (SELECT trial_id FROM sweep_trials QUALIFY row_number() OVER "
                   f"(PARTITION BY sweep ORDER BY hash(trial_id), trial_id) <= {int(size)}) ORDER BY trial_id").to_arrow_table()


def read_files(con: duckdb.DuckDBPyConnection, paths: Sequence[str], criteria: Sequence[Success],
               pool: pa.Table) -> dict[str, tuple[pa.Table, pa.Table]]:
    """What the memo keeps of each metrics file of `paths` (which `con` may read), in one scan of
    them all: {path: (summary, pool rows)}. The summary has one row per trial and attempt in the
    file: `trial_id`, `attempt`, and per criterion i `step_i` and `samples_i`, its first success in
    this file (NULL where it did not hold); the pool rows are the file's rows of `pool`'s trials."""
    if not paths:
        return {}
    source = f"read_parquet([{', '.join(_quoted(p) for p in paths)}], union_by_name = true, filename = '_file')"
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    samples = "samples" if "samples" in have else "NULL::BIGINT"
    parts = []
    for i, c in enumerate(criteria):
        if c.metric in have and c.op in OPS:
            m = ident(c.metric)
            met = f"{m} {c.op} {number_sql(c.value)} AND isfinite({m})"
            parts.append(f"min(step) FILTER ({met}) AS step_{i}, arg_min({samples}, step) FILTER ({met}) AS samples_{i}")
        else:
            parts.append(f"NULL::BIGINT AS step_{i}, NULL::BIGINT AS samples_{i}")
    summaries = con.sql(f"SELECT {', '.join(['_file', 'trial_id', 'attempt', *parts])} FROM {source} "
                        "GROUP BY _file, trial_id, attempt").to_arrow_table()
    con.register("_pool_ids", pool)
    try:
        pooled = con.sql(f"SELECT * FROM {source} WHERE trial_id IN (SELECT trial_id FROM _pool_ids)").to_arrow_table()
    finally:
        con.unregister("_pool_ids")
    return {p: (_of(summaries, p), _of(pooled, p)) for p in paths}


def _of(table: pa.Table, path: str) -> pa.Table:
    """The rows of `table` read from the file at `path` (its `_file` column), without that column."""
    return table.filter(pc.equal(table.column("_file"), path)).drop_columns(["_file"])


def _quoted(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def memoize(con: duckdb.DuckDBPyConnection, read: Sequence[tuple[pa.Table, pa.Table]], criteria: Sequence[Success],
            pool: pa.Table) -> None:
    """Build the module's tables in `con`'s database from what `read_files` kept of every live
    metrics file of its snapshot, for `criteria` and `pool`. The first successes and the pool's
    rows are those of the attempt `metrics` shows (`store.VIEWS`): a trial's result's, else its
    newest; the trials with curves are those of any attempt, as in `metrics_all`."""
    steps = ", ".join(f"step_{i}, samples_{i}" for i in range(len(criteria)))
    schema = pa.schema([("trial_id", pa.string()), ("attempt", pa.int64()),
                        *((f"{k}_{i}", pa.int64()) for i in range(len(criteria)) for k in ("step", "samples"))])
    summaries = pa.concat_tables([schema.empty_table(), *(t.select(schema.names).cast(schema) for t, _ in read)])
    pooled = [rows for _, rows in read if rows.num_rows]
    pooled = pa.concat_tables(pooled, promote_options="permissive") if pooled else None
    con.register("_summaries", summaries)
    con.register("_pool_ids", pool)
    try:
        con.execute(f"CREATE TABLE IF NOT EXISTS main.{CURVE_TRIALS} AS SELECT DISTINCT trial_id FROM _summaries")
        retried = (pc.max(summaries.column("attempt")).as_py() or 1) > 1 or \
            con.execute("SELECT coalesce(max(attempt), 1) > 1 FROM trials_all").fetchall()[0][0]
        if retried:  # the attempt each trial's `metrics` rows are of (else every row is attempt 1's)
            counted = ("SELECT s.trial_id, coalesce(max(t.attempt), max(s.attempt)) AS attempt FROM _summaries s "
                       "LEFT JOIN trials t USING (trial_id) GROUP BY s.trial_id")
            con.execute(f"CREATE TEMP TABLE _counted AS SELECT s.trial_id, s.attempt, {steps} FROM _summaries s "
                        f"JOIN ({counted}) a ON s.trial_id = a.trial_id AND s.attempt = a.attempt")
        else:
            con.execute("CREATE TEMP VIEW _counted AS SELECT * FROM _summaries")
        for i, c in enumerate(criteria):
            con.execute(f"CREATE TABLE IF NOT EXISTS main.{successes_table(c)} AS SELECT trial_id, min(step_{i}) AS step, "
                        f"arg_min(samples_{i}, step_{i}) AS samples FROM _counted WHERE step_{i} IS NOT NULL GROUP BY trial_id")
        con.execute(f"CREATE TABLE IF NOT EXISTS main.{POOL} AS SELECT trial_id FROM _pool_ids")
        # the pool's rows with the columns of `metrics`, of the attempt that counts
        con.execute(f"CREATE TABLE IF NOT EXISTS main.{POOL_METRICS} AS SELECT * FROM metrics_all WHERE false")
        if pooled is not None:
            con.register("_pooled", pooled)
            con.execute(f"INSERT INTO main.{POOL_METRICS} BY NAME SELECT p.* FROM _pooled p" +
                        (" SEMI JOIN (SELECT DISTINCT trial_id, attempt FROM _counted) c USING (trial_id, attempt)"
                         if retried else ""))
        con.execute(f"DROP {'TABLE' if retried else 'VIEW'} _counted")
    finally:
        for name in ("_summaries", "_pool_ids", "_pooled"):
            try:
                con.unregister(name)
            except duckdb.Error:
                pass


def pooled_metrics(con: duckdb.DuckDBPyConnection, needed: Sequence[str]) -> str | None:
    """The table of `metrics` narrowed to the pool's trials where `con`'s database holds the pool
    with every column in `needed`, else None (draw from `metrics`)."""
    if not held(con, POOL_METRICS) or not set(needed) <= {r[0] for r in con.execute(f"DESCRIBE main.{POOL_METRICS}").fetchall()}:
        return None
    return f"main.{POOL_METRICS}"


def curve_trials_sql(con: duckdb.DuckDBPyConnection) -> str:
    """SQL of every trial id with a curve row (any attempt): the memo where `con`'s database holds it."""
    return f"main.{CURVE_TRIALS}" if held(con, CURVE_TRIALS) else "(SELECT DISTINCT trial_id FROM metrics_all)"

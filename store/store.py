"""The result store: a folder of append-only Parquet files, queried through DuckDB views.

Layout (one subfolder per table, many immutable files each):

    results/trials/<time>-<id>.crc32-<crc>.parquet    one row per finished attempt
    results/metrics/<time>-<id>.crc32-<crc>.parquet   one row per evaluation (the curves)
    results/sweeps/<time>-<id>.crc32-<crc>.parquet    one row per submitted version of a sweep

The folder may be local (or an NFS mount) or on any filesystem pyarrow supports (`s3://bucket/prefix`,
`gs://...`); `files.Location` writes each file whole under its final name (a temporary name, fsync
and rename on a local disk; one upload of a complete local file on an object store), so a reader (DuckDB, pandas, polars,
pyarrow) never sees a partial file and a killed writer loses only rows it had not flushed. DuckDB
reads local files natively and other filesystems through pyarrow datasets (no DuckDB extension).

A trial ends only with its whole curve. `StoreWriter` writes the curves of a flush before the
results of that flush, each file durable (fsynced, and its folder too) before the next is begun,
and each trial row holds `curve_rows`, the number of metric rows its attempt reported: a driver
killed between two files, or a disk that fills up, leaves curves without results (the trial runs
again, as the next attempt), never a result without its curve. `Store.ended` counts a trial as
ended only when its attempt's curve has all its rows, so a curve lost later (a file moved aside
by `paretolab doctor`) makes its trial run again too.

Every file is sealed with its CRC-32 (`files.py`), checked once per process before any query
reads the file. A file that cannot be read, or whose bytes changed (a full disk, a crash, a flipped
bit), is skipped by every query, with a warning naming it; `paretolab doctor` (`analysis/doctor.py`)
moves it aside, and the next run of its sweep runs its trials again.

Compaction merges many small files of a table into one without changing any answer of
paretolab's views: the merged file lists in its own footer (`paretolab.replaces`) the files it
replaces, so its appearance (a rename, or a PUT) is the single atomic step that adds its rows and
hides theirs. The replaced files are deleted right after (a plain glob reader can see both for
that instant; a paretolab query that loses a file mid-way is retried on a fresh snapshot).
Stores compacted before merged files listed what they replace keep that list in
`<table>/_compactions.json`, which is still read.

Trials files written before final metrics were `final_<metric>` columns (they lack
`stopped_at_success`) are read in today's shape by every view and by compaction (`_trials_scan`).

Query connections cannot write or reach the network: DuckDB's external access is off (it reads
only the snapshot's own files), extensions are neither installed nor loaded, and the configuration
is locked before a query runs.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from paretolab.store import files as _files
from paretolab.store.files import FileEntry, Location
from paretolab.vocabulary.errors import StoreError, UsageError, shown
from paretolab.vocabulary.schema import CHECKPOINTS, CURVE_KEYS, STATUSES, TABLES, empty_select, final_column

REPLACES = b"paretolab.replaces"  # footer key of a merged file: the JSON list of the files it replaces
SNAPSHOT_RETRIES = 5

EMPTY = {table: empty_select(table) for table in TABLES}  # what each view has before its first file
# The column every trials file written since final metrics became `final_<metric>` columns has
# (`Store._trials_scan` reads older files in today's shape).
LEGACY_MARK = "stopped_at_success"

VIEWS = {
    # The latest attempt of each trial: a trial re-run after its worker died has several rows.
    "trials": "SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER "
              "(PARTITION BY trial_id ORDER BY attempt DESC) AS _rank FROM trials_all) WHERE _rank = 1",
    # The curve of the attempt that counts: the finished one, or for a running trial its newest.
    "metrics": "SELECT m.* FROM metrics_all m JOIN (SELECT m2.trial_id, coalesce(max(t.attempt), "
               "max(m2.attempt)) AS attempt FROM metrics_all m2 LEFT JOIN trials t USING (trial_id) "
               "GROUP BY m2.trial_id) a ON m.trial_id = a.trial_id AND m.attempt = a.attempt",
    # A sweep is its newest submitted version; a trial may belong to several sweeps.
    "sweeps": "SELECT * EXCLUDE (_rank) FROM (SELECT *, row_number() OVER "
              "(PARTITION BY sweep ORDER BY submitted_at DESC) AS _rank FROM sweeps_all) WHERE _rank = 1",
    "sweep_trials": "SELECT sweep, unnest(trial_ids) AS trial_id FROM sweeps",
}


T = TypeVar("T")
MANIFEST = "_compactions.json"  # legacy: merged files now list what they replace in their footer
ROWS_PER_BATCH = 65_536
# Every file carries Parquet's page checksums (checked by pyarrow's reads; DuckDB does not check
# them, which is why files are also sealed whole: files.py).
PARQUET_OPTIONS = {"write_page_checksum": True}
QUARANTINE = "_quarantine"  # where `paretolab doctor` moves files that do not read: <store>/_quarantine/<table>/
# DuckDB errors raised before any file is read: bad SQL, not a bad or vanished file.
SQL_ERRORS = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)


class Store:
    """A result store: a local folder or a URI. Reading is safe from any number of processes while one run writes.

    `root` is the folder of a local store (as given) and None on an object store; `uri` is the
    store as given, for messages.
    """

    def __init__(self, root: str | Path):
        self.loc = Location.parse(root)
        self.uri = self.loc.uri
        self.root = (Path(root) if "://" not in str(root) else self.loc.root)
        self._lease = None

    def exists(self) -> bool:
        """Whether the store has been created (an empty folder is a new, empty store).

        Raises:
            StoreError: the folder holds something else: a table folder of a store, or other files.
        """
        names = self.loc.names()
        if names is None:
            return False
        problem = _not_a_store(self.uri, names)
        if problem:
            raise StoreError(problem)
        return True

    def files(self, table: str) -> list[Path | PurePosixPath]:
        """The live, readable Parquet files of `table`, oldest first: committed, not replaced by
        compaction, and with a footer that reads (the others are skipped with a `StoreWarning`)."""
        return [self._as_path(e.path) for e in self._live(table)]

    def _as_path(self, path: str) -> Path | PurePosixPath:
        return Path(path) if self.loc.local else PurePosixPath(path)

    def _committed(self, table: str) -> list[FileEntry]:
        """Every Parquet file of `table` not replaced by a compaction, readable or not."""
        for _ in range(SNAPSHOT_RETRIES):
            entries = self.loc.list(table)
            try:
                hidden = self._replaced(table, entries)
            except FileNotFoundError:  # a compaction deleted a file while it was read: list again
                continue
            return [e for e in entries if e.name not in hidden]
        raise StoreError(f"cannot list {self.uri}/{table}: its files keep changing (is another program "
                         "compacting or deleting them?)")

    def _replaced(self, table: str, entries: list[FileEntry]) -> set[str]:
        """Names of files that a present merged file replaces (per its footer, or the legacy manifest)."""
        present = {e.name for e in entries}
        hidden = {f for merged, replaced in self._manifest(table).items() if merged in present for f in replaced}
        for e in entries:
            schema = _files.footer(self.loc, e)
            if isinstance(schema, pa.Schema) and schema.metadata and REPLACES in schema.metadata:
                hidden.update(json.loads(schema.metadata[REPLACES]))
        return hidden

    def _live(self, table: str) -> list[FileEntry]:
        return _files.readable(self.loc, self._committed(table))

    def _manifest(self, table: str) -> dict[str, list[str]]:
        """{merged file: [files it replaces]} of a table folder compacted before merged files listed
        what they replace in their footer.

        Raises:
            StoreError: the manifest is corrupt (`paretolab doctor` rebuilds it).
        """
        data = self.loc.read_bytes(table, MANIFEST)
        if not data:
            return {}
        try:
            manifest = json.loads(data)
            if isinstance(manifest, dict) and all(isinstance(v, list) for v in manifest.values()):
                return manifest
        except (ValueError, UnicodeDecodeError):
            pass
        raise StoreError(f"the compaction manifest {self.loc.show(self.loc.path(table, MANIFEST))} is corrupt; "
                         f"run `paretolab doctor{'' if self.uri == 'results' else ' --store ' + self.uri}` to rebuild it")

    def compact(self, table: str, min_files: int = 2) -> int:
        """Merge the live files of `table` into one file; returns how many files were merged.

        Only the holder of `lock()` may compact. Queries keep their answers throughout.

        Raises:
            StoreError: the store cannot be written.
        """
        entries = self._live(table)
        if len(entries) < min_files:
            return 0
        self._check_writable()
        replaces = json.dumps([e.name for e in entries]).encode()
        try:
            with duckdb.connect() as con:  # read as the views read them (older trials rows in today's shape)
                self._raw_views(con, {t: entries if t == table else self._live(t) for t in TABLES})
                rows = con.sql(f"SELECT * FROM {table}_all").to_arrow_reader(ROWS_PER_BATCH)
                schema = rows.schema.with_metadata({REPLACES: replaces})

                def write(out: pa.NativeFile) -> None:
                    with pq.ParquetWriter(out, schema, **PARQUET_OPTIONS) as w:
                        for batch in rows:
                            w.write_batch(batch)

                self.loc.put((table, new_name()), write, seal=True)  # the single atomic step
        except (OSError, duckdb.Error, pa.ArrowException) as e:
            raise StoreError(f"cannot compact {self.uri}/{table}: {e}") from None
        for e in entries:
            self.loc.delete(e.path)
        return len(entries)

    def connect(self, sweep: str | None = None, writes_files: bool = False) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the views `trials`, `metrics`, `sweeps`, `sweep_trials`
        (and the raw `trials_all`, `metrics_all`, `sweeps_all`). With `sweep`, `trials` and `metrics`
        hold only that sweep's trials.

        The connection reads the store's files and nothing else: it cannot write a file, read
        another, reach the network or install or load an extension, and its settings are locked.
        `writes_files=True` (for `export`) leaves file access on; extensions stay off.

        Raises:
            StoreError: the store does not exist or `sweep` is not in it.
        """
        return self._connect(sweep, locked=not writes_files)[0]

    def _connect(self, sweep: str | None, locked: bool = True) -> tuple[duckdb.DuckDBPyConnection, list[FileEntry]]:
        if not self.exists():
            raise StoreError(f"no result store at {self.uri} (run a sweep first, or pass --store PATH)")
        for retry in range(SNAPSHOT_RETRIES):
            con, snapshot = duckdb.connect(config=NO_EXTENSIONS), []
            try:
                self._views(con, snapshot)
                break
            except duckdb.Error as e:
                con.close()
                if isinstance(e, SQL_ERRORS) or retry == SNAPSHOT_RETRIES - 1 or not self._changed(snapshot):
                    raise StoreError(f"cannot read the store at {self.uri}: {str(e).splitlines()[0]}") from None
        if sweep is not None:
            self._restrict(con, sweep)
        if locked:
            try:
                self._prepare(con, snapshot)
            except BaseException:
                con.close()
                raise
            _lock_down(con, [e.path for e in snapshot] if self.loc.local else [])
        return con, snapshot

    def _prepare(self, con: duckdb.DuckDBPyConnection, snapshot: list[FileEntry]) -> None:
        """What a reader that keeps its connections does to a new one before its settings are
        locked (`serve.shared.SharedSnapshots`); nothing here."""

    def _views(self, con: duckdb.DuckDBPyConnection, snapshot: list[FileEntry]) -> None:
        """Create the views over a snapshot of the live files, which it appends to `snapshot`."""
        live = {table: self._live(table) for table in TABLES}
        for entries in live.values():  # a snapshot of the live files: connections are meant to be short-lived
            snapshot += entries
        self._raw_views(con, live)
        # With no re-run attempt anywhere (the usual case) the latest-attempt views are the raw
        # tables; skipping their window and join makes a scan of 10^7 metric rows ~5x faster.
        retried = con.execute("SELECT (SELECT coalesce(max(attempt), 1) FROM trials_all) > 1 OR "
                              "(SELECT coalesce(max(attempt), 1) FROM metrics_all) > 1").fetchall()[0][0]
        for name in ("sweeps", "sweep_trials", "trials", "metrics"):
            body = VIEWS[name] if retried or name not in ("trials", "metrics") else f"SELECT * FROM {name}_all"
            con.execute(f"CREATE VIEW {name} AS {body}")

    def _raw_views(self, con: duckdb.DuckDBPyConnection, live: dict[str, list[FileEntry]]) -> None:
        """The views `<table>_all` over the files `live[table]` (of a snapshot, or those a compaction merges)."""
        for table in ("sweeps", "metrics", "trials"):  # trials last: its older files are read against the others
            entries = live[table]
            if not entries:
                con.execute(f"CREATE VIEW {table}_all AS SELECT {EMPTY[table]} WHERE false")
            elif table == "trials":
                source = self._trials_scan(con, entries, live["metrics"])
                con.execute(f"CREATE VIEW trials_all AS SELECT * FROM {source}")
            else:
                con.execute(f"CREATE VIEW {table}_all AS SELECT * FROM {self._scan(con, table, entries)}")

    def _scan(self, con: duckdb.DuckDBPyConnection, table: str, entries: list[FileEntry], name: str = "") -> str:
        """A FROM clause over `entries`: DuckDB's own reader on a local disk, a pyarrow dataset elsewhere
        (registered as `name`, default `_<table>_files`)."""
        if self.loc.local:
            listed = ", ".join(f"'{_sql_str(e.path)}'" for e in entries)
            return f"read_parquet([{listed}], union_by_name = true)"
        import pyarrow.dataset as ds

        # the union of the files' schemas (columns added later, all-NULL columns), as union_by_name does
        schema = pa.unify_schemas([_files.footer(self.loc, e) for e in entries], promote_options="permissive")
        name = name or f"_{table}_files"
        con.register(name, ds.dataset([e.path for e in entries], schema=schema, filesystem=self.loc.fs,
                                      format="parquet"))
        return name

    def _trials_scan(self, con: duckdb.DuckDBPyConnection, entries: list[FileEntry],
                     metric_entries: list[FileEntry]) -> str:
        """A FROM clause over the trials files `entries`, each row in today's shape.

        A file written before final metrics were `final_<metric>` columns has no `stopped_at_success`
        column (every row written since has one). Its rows read as today's: each of its legacy
        metric columns `m` (`_legacy_metrics`) as `final_m`, and `stopped_at_success` NULL (not
        recorded). A store of files of both kinds, and their compaction, read the same way.
        """
        names = {e.path: _files.footer(self.loc, e).names for e in entries}  # readable: their footers read
        legacy = [e for e in entries if LEGACY_MARK not in names[e.path]]
        if not legacy:
            return self._scan(con, "trials", entries)
        current = [e for e in entries if LEGACY_MARK in names[e.path]]
        renamed = _legacy_metrics(con, [n for e in legacy for n in names[e.path]], metric_entries, self.loc)
        finals = "".join(f", {ident(m)} AS {ident(final_column(m))}" for m in renamed)
        parts = [f"SELECT *{_exclude(renamed)}{finals}, NULL::BOOLEAN AS {LEGACY_MARK} "
                 f"FROM {self._scan(con, 'trials', legacy, '_trials_legacy')}"]
        if current:  # (today's schema file, the union of every file's columns, also has the legacy ones, empty)
            stale = [m for m in renamed if any(m in names[e.path] for e in current)]
            parts.insert(0, f"SELECT *{_exclude(stale)} FROM {self._scan(con, 'trials', current)}")
        return "(" + " UNION ALL BY NAME ".join(parts) + ")"

    def _restrict(self, con: duckdb.DuckDBPyConnection, sweep: str) -> None:
        names = [r[0] for r in con.execute("SELECT sweep FROM sweeps ORDER BY sweep").fetchall()]
        if sweep not in names:
            raise StoreError(f"unknown sweep {sweep!r}; in {self.uri}: {', '.join(names) or 'none yet'}")
        # Every trial in a store was submitted in some sweep row; if all of them are in this sweep,
        # restricting to it changes nothing and its semi-join over the curves can be skipped.
        if con.execute("SELECT count(*) FROM sweeps_all").fetchall()[0][0] == 1:
            return
        # a table of the connection's own in-memory database, not a temporary one: its cursors see it too
        con.execute("CREATE TABLE _ids AS SELECT trial_id FROM sweep_trials WHERE sweep = ?", [sweep])
        if con.execute("SELECT count(*) = 0 FROM (SELECT DISTINCT unnest(trial_ids) AS trial_id FROM sweeps_all) "
                       "WHERE trial_id NOT IN (SELECT trial_id FROM _ids)").fetchall()[0][0]:
            return
        con.execute(f"CREATE OR REPLACE VIEW trials AS SELECT * FROM ({VIEWS['trials']}) WHERE trial_id IN (SELECT trial_id FROM _ids)")
        con.execute(f"CREATE OR REPLACE VIEW metrics AS SELECT * FROM ({VIEWS['metrics']}) WHERE trial_id IN (SELECT trial_id FROM _ids)")

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T], sweep: str | None = None) -> T:
        """`fn(connection)` on a fresh snapshot of the store, retried on a new snapshot when a file
        vanished under it (compaction) or turned out corrupt past its footer (then skipped, with a warning).

        Raises:
            StoreError: the SQL is invalid or fails; the message is DuckDB's.
        """
        for retry in range(SNAPSHOT_RETRIES):
            con, snapshot = self._connect(sweep)
            try:
                return fn(con)
            except duckdb.Error as e:
                if isinstance(e, SQL_ERRORS) or retry == SNAPSHOT_RETRIES - 1 or not self._changed(snapshot):
                    if isinstance(e, duckdb.PermissionException):  # (a vanished file reads as one: retried)
                        raise StoreError(f"a query reads only the store's views, not other files, URLs or "
                                         f"extensions: {str(e).splitlines()[0]}") from None
                    raise StoreError(f"query failed: {str(e).splitlines()[0]} (fix the SQL; views: trials, metrics, "
                                     "sweeps, sweep_trials, and the raw trials_all, metrics_all, sweeps_all)") from None
            finally:
                con.close()

    def _changed(self, snapshot: list[FileEntry]) -> bool:
        """Whether a file of `snapshot` has vanished since, or is found unreadable now (a full read)."""
        if any(i.type == pafs.FileType.NotFound for i in self.loc.fs.get_file_info([e.path for e in snapshot])):
            return True
        bad = False
        for e in snapshot:
            reason = _files.full_read_error(self.loc, e)
            if reason is not None:
                _files.mark_unreadable(self.loc, e, reason)
                bad = True
        return bad

    def query(self, sql: str, params: list | None = None, sweep: str | None = None) -> pa.Table:
        """Run `sql`, one statement that reads (`check_read_only`), over the views and return the
        result as an Arrow table.

        Raises:
            StoreError: the SQL is invalid, writes, or fails; the message is DuckDB's.
        """
        check_read_only(sql)

        def run(con: duckdb.DuckDBPyConnection) -> pa.Table:
            rel = con.sql(sql, params=params or None)
            return rel.to_arrow_table() if rel is not None else pa.table({})

        return self.read(run, sweep)

    def trials(self, sweep: str | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """The `trials` view (the latest attempt of each trial, its config flattened into columns) as
        an Arrow table, ordered by trial id: every column or `columns`, of every trial or of `sweep`'s.
        `.to_pandas()` or `polars.from_arrow(...)` make it a data frame.

        Raises:
            StoreError: no such store or sweep. UsageError: a column the table does not have.
        """
        def run(con: duckdb.DuckDBPyConnection) -> pa.Table:
            have = [r[0] for r in con.execute("DESCRIBE trials").fetchall()]
            wanted = list(columns) if columns is not None else have
            unknown = [c for c in wanted if c not in have]
            if unknown:
                raise UsageError(f"unknown column {shown(unknown[0])} of trials; it has: {', '.join(have)}")
            return con.sql(f"SELECT {', '.join(ident(c) for c in wanted) or '*'} FROM trials "
                           "ORDER BY trial_id").to_arrow_table()

        return self.read(run, sweep)

    def metrics(self, sweep: str | None = None, trial_ids: Sequence[str] | None = None) -> pa.Table:
        """The `metrics` view (each trial's curve, of the attempt that counts) as an Arrow table,
        ordered by trial and step: of every trial, of `sweep`'s, or of `trial_ids`.

        Raises:
            StoreError: no such store or sweep.
        """
        def run(con: duckdb.DuckDBPyConnection) -> pa.Table:
            if trial_ids is None:
                return con.sql("SELECT * FROM metrics ORDER BY trial_id, step").to_arrow_table()
            return con.sql("SELECT * FROM metrics WHERE trial_id IN (SELECT unnest(?::VARCHAR[])) "
                           "ORDER BY trial_id, step", params=[list(trial_ids)]).to_arrow_table()

        return self.read(run, sweep)

    def ended(self, retry_failed: bool = False) -> set[str]:
        """Ids of trials whose latest attempt ended (finished or diverged, and failed unless
        `retry_failed`) with its whole curve.

        A trial row counts the metric rows its attempt reported (`curve_rows`); one whose curve
        has fewer rows in the store (a file lost, or moved aside by `paretolab doctor`) has not
        ended: the store is a cache, so it runs again. Rows written before `curve_rows` existed:
        such a trial has not ended when its curve has no row left once `doctor` moved a curve
        file aside (a store written by other means may hold results without curves).
        """
        if not self.files("trials"):
            return set()
        statuses = ["finished", "diverged"] + ([] if retry_failed else ["failed"])

        def run(con: duckdb.DuckDBPyConnection) -> set[str]:
            sql = "SELECT trial_id FROM trials t WHERE list_contains(?, status)"
            if "curve_rows" in columns(con, "trials_all"):
                sql = (f"SELECT t.trial_id FROM trials t LEFT JOIN ({CURVE_ROWS}) m USING (trial_id, attempt) "
                       "WHERE list_contains(?, t.status) AND (t.curve_rows IS NULL OR coalesce(m.n, 0) >= t.curve_rows)")
                if self.loc.list(f"{QUARANTINE}/metrics"):
                    sql += " AND (t.curve_rows IS NOT NULL OR t.status = 'failed' OR m.n > 0)"
            elif self.loc.list(f"{QUARANTINE}/metrics"):
                sql += " AND (status = 'failed' OR (trial_id, attempt) IN (SELECT trial_id, attempt FROM metrics_all))"
            return {row[0] for row in con.execute(sql, [statuses]).fetchall()}

        return self.read(run)

    def short_curves(self) -> list[dict]:
        """Trials whose latest attempt has a result but fewer metric rows than it reported:
        `trial_id`, `attempt`, `status`, `curve_rows` (reported) and `rows` (in the store)."""
        if not self.files("trials"):
            return []

        def run(con: duckdb.DuckDBPyConnection) -> list[dict]:
            if "curve_rows" not in columns(con, "trials_all"):
                return []
            return con.sql(f"SELECT t.trial_id, t.attempt, t.status, t.curve_rows, coalesce(m.n, 0) AS rows "
                           f"FROM trials t LEFT JOIN ({CURVE_ROWS}) m USING (trial_id, attempt) "
                           "WHERE coalesce(m.n, 0) < t.curve_rows ORDER BY t.trial_id").to_arrow_table().to_pylist()

        return self.read(run)

    def last_attempts(self) -> dict[str, int]:
        """The highest attempt number recorded for each trial, in `trials` or `metrics`."""
        if not self.files("trials") and not self.files("metrics"):
            return {}
        t = self.query("SELECT trial_id, max(attempt) FROM (SELECT trial_id, attempt FROM trials_all "
                       "UNION ALL SELECT trial_id, attempt FROM metrics_all) GROUP BY trial_id")
        return dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))

    def results(self, trial_ids: list[str], retry_failed: bool = False) -> list[dict]:
        """The `trials` rows (latest attempt, every column) of those of `trial_ids` that ended:
        finished, diverged, pruned, and failed unless `retry_failed`; in no particular order."""
        if not trial_ids or not self.files("trials"):
            return []
        statuses = [s for s in STATUSES if not (retry_failed and s == "failed")]
        return self.query("SELECT * FROM trials WHERE list_contains(?, trial_id) AND list_contains(?, status)",
                          [list(trial_ids), statuses]).to_pylist()

    def step_quantiles(self, trial_ids: list[str], metric: str, q: float,
                       steps: list[int] | None = None) -> list[tuple[int, float]]:
        """(step, value) per step of the curves of `trial_ids`, ascending: the `q` quantile
        (interpolated; 0.5 is the median) of `metric`'s finite values at that step. Only the
        steps in `steps`, if given; [] when no curve has a finite value there.

        Raises:
            StoreError: no curve of the store has a column `metric`.
        """
        if not trial_ids or not self.files("metrics") or steps == []:
            return []
        m = ident(metric)
        at = "" if steps is None else " AND list_contains(?, step)"
        rows = self.query(f"SELECT step, quantile_cont({m}, {float(q)!r}) AS bar FROM metrics "
                          f"WHERE list_contains(?, trial_id){at} AND isfinite({m}) GROUP BY step ORDER BY step",
                          [list(trial_ids)] + ([list(steps)] if steps is not None else [])).to_pylist()
        return [(r["step"], r["bar"]) for r in rows]

    def step_span(self, trial_ids: list[str]) -> tuple[int, int] | None:
        """The first step above 0 and the last step that the curves of `trial_ids` reached; None
        when none reached a step above 0."""
        if not trial_ids or not self.files("metrics"):
            return None
        row = self.query("SELECT min(step) FILTER (WHERE step > 0) AS lo, max(step) AS hi FROM metrics "
                         "WHERE list_contains(?, trial_id)", [list(trial_ids)]).to_pylist()[0]
        return (row["lo"], row["hi"]) if row["lo"] is not None else None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's write lock: one run writes a store at a time.

        On a local disk (or NFS) the lock is an `flock` on `<store>/.lock`, released by the kernel
        when its holder exits, so a crashed run never leaves a stale lock behind (`analysis/flock.py`).
        On an object store it is a lease object refreshed by its holder (`analysis/lease.py`); a
        lease not refreshed for a minute is taken over.

        Raises:
            StoreError: the store cannot be created (a read-only or full disk), or another run holds
                the lock; a refused lock leaves no `.lock` or store folder it created behind.
        """
        self.exists()  # a folder that is not a store is refused before anything is written into it
        if not self.loc.local:
            from paretolab.store.lease import Lease

            self._lease = Lease(self.loc).acquire()
            try:
                yield
            finally:
                self._lease.release()
                self._lease = None
            return
        from paretolab.store import flock

        fd = flock.take(Path(self.loc.base), self.uri)
        try:
            yield
        finally:
            os.close(fd)

    def _check_writable(self) -> None:
        if self._lease is not None:
            self._lease.check()


def _not_a_store(uri: str, names: list[str]) -> str | None:
    """Why a folder holding `names` is not a result store; None when it is one, or is empty.

    A store holds table folders, and before its first flush only what a run writes first (its lock
    or lease, its checkpoints); hidden files (`.DS_Store`) do not count. Anything else is refused
    rather than read as an empty store, or written into."""
    from paretolab.store.lease import LEASE

    if set(names) & {*TABLES, QUARANTINE}:
        return None
    parent, _, base = uri.rstrip("/").rpartition("/")
    if base in TABLES and any(n.endswith(".parquet") for n in names):
        return f"{uri} is the {base} table folder of the store {parent or '.'}; pass --store {parent or '.'}"
    other = [n for n in names if not n.startswith(".") and n not in (LEASE, CHECKPOINTS)]
    if not other:
        return None
    return (f"{uri} holds no paretolab store (no trials/, metrics/ or sweeps/ folder; it holds {shown(other[0])}"
            f"{f' and {len(other) - 1} more' if len(other) > 1 else ''}); pass --store a store, or a new or empty folder")


def check_read_only(sql: str) -> None:
    """A query reads: one SELECT (WITH, FROM-first, DESCRIBE and SUMMARIZE are SELECTs to DuckDB) or
    an EXPLAIN of one. COPY, ATTACH, CREATE, INSERT and the like could write files, and so could
    `EXPLAIN ANALYZE`, which runs the statement it explains: they are refused. (A locked
    connection can write no file outside the store, but could overwrite the snapshot's own files.)

    Raises:
        StoreError: more than one statement, or one that is not a read."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error:
        return  # a syntax error: running it reports it, with the views to use
    kinds = [st.type for st in statements]
    if len(kinds) != 1:
        raise StoreError(f"query takes one statement, got {len(kinds)}; run them one at a time")
    if kinds[0] == duckdb.StatementType.EXPLAIN:
        kinds = [_explained(sql)]
    if kinds[0] != duckdb.StatementType.SELECT:
        raise StoreError(f"query only reads (SELECT, WITH ..., EXPLAIN of a SELECT), got {kinds[0].name}; "
                         "use `paretolab export` to write a sweep's files")


def _explained(sql: str) -> duckdb.StatementType:
    """The type of the statement an EXPLAIN explains; StoreError for EXPLAIN ANALYZE (it runs it)."""
    tokens = [(pos, kind) for pos, kind in duckdb.tokenize(sql) if kind != duckdb.token_type.comment]
    words = [sql[pos:].split(None, 1)[0].strip("()").upper() for pos, _ in tokens]
    i, depth = 1, 0  # tokens[0] is EXPLAIN; skip its options: `EXPLAIN (FORMAT json) ...`
    while i < len(tokens) and (depth or sql[tokens[i][0]] == "("):
        if words[i] in ("ANALYZE", "ANALYSE"):
            break
        depth += sql[tokens[i][0]] == "("
        depth -= sql[tokens[i][0]] == ")"
        i += 1
    if i < len(tokens) and words[i] in ("ANALYZE", "ANALYSE"):
        raise StoreError("query refuses EXPLAIN ANALYZE: it runs the statement it explains; use EXPLAIN")
    if i >= len(tokens):
        return duckdb.StatementType.EXPLAIN
    inner = duckdb.extract_statements(sql[tokens[i][0]:])
    return inner[0].type if len(inner) == 1 else duckdb.StatementType.EXPLAIN


def _legacy_metrics(con: duckdb.DuckDBPyConnection, legacy_columns: list[str], metric_entries: list[FileEntry],
                    loc: Location) -> list[str]:
    """The columns of older trials files that hold final metrics: those named like a metric column of
    the `metrics` table (its columns but `CURVE_KEYS`), except where `final_<name>` is a column too, or
    a sweep row lists the name as a parameter (a parameter `loss` of one sweep, a metric `loss` of
    another), so that no parameter is renamed."""
    metrics = {n for e in metric_entries for n in _files.footer(loc, e).names} - set(CURVE_KEYS)
    have = set(legacy_columns)
    params: set[str] = set()
    if any(m in have for m in metrics) and "parameters" in columns(con, "sweeps_all"):
        params = {r[0] for r in con.execute("SELECT DISTINCT unnest(parameters) FROM sweeps_all").fetchall()}
    return [c for c in dict.fromkeys(legacy_columns)
            if c in metrics and c not in params and final_column(c) not in have]


def _exclude(names: list[str]) -> str:
    return f" EXCLUDE ({', '.join(ident(n) for n in names)})" if names else ""


# The rows each attempt's curve has in the store.
CURVE_ROWS = "SELECT trial_id, attempt, count(*) AS n FROM metrics_all GROUP BY trial_id, attempt"


def ident(name: str) -> str:
    """`name` quoted as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def columns(con: duckdb.DuckDBPyConnection, view: str) -> list[str]:
    """The column names of a view or table of `con`."""
    return [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall()]


def held(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    """Whether `con`'s database holds `table` in its own schema (not a temporary one): what every
    cursor of that database sees."""
    return con.execute("SELECT count(*) > 0 FROM duckdb_tables() WHERE NOT temporary AND schema_name = 'main' "
                       "AND database_name = current_database() AND table_name = ?", [table]).fetchall()[0][0]


# No extension is installed or loaded by a query (a URL in a query would otherwise fetch httpfs).
NO_EXTENSIONS = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def _lock_down(con: duckdb.DuckDBPyConnection, paths: list[str]) -> None:
    """From now on `con` reads only `paths` (the snapshot's files; a pyarrow dataset registered
    before is read by pyarrow) and cannot change that: no file written or read elsewhere, no
    network, no extension. A statement that writes is also refused before it runs
    (`views.read_only`): a COPY to a snapshot's own file would pass these settings."""
    con.execute("SET allowed_paths = ?", [paths])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def new_name() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def _sql_str(s: str) -> str:
    return s.replace("'", "''")

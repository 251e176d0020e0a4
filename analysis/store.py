"""The result store: a folder of append-only Parquet files, queried through DuckDB views.

Layout (one subfolder per table, many immutable files each):

    results/trials/<time>-<id>.parquet    one row per finished attempt
    results/metrics/<time>-<id>.parquet   one row per evaluation (the curves)
    results/sweeps/<time>-<id>.parquet    one row per submitted version of a sweep

Files are written to a hidden temporary name, fsynced, then renamed, so a reader (DuckDB, pandas,
polars, pyarrow) never sees a partial file and a killed writer loses only rows it had not flushed.

Compaction merges many small files of a table into one without changing any answer of
paretolab's views: before the merged file is renamed into place, `<table>/_compactions.json`
records which files it replaces, and `Store.files` hides a replaced file as soon as its
replacement exists. The rename is the single atomic step; the replaced files are deleted right
after (a plain glob reader can see both for that instant; a paretolab query that loses a file
mid-way is retried on a fresh snapshot).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from paretolab.errors import StoreError

TABLES = ("trials", "metrics", "sweeps")
SNAPSHOT_RETRIES = 5

# Columns each view has even when its table has no file yet, so queries on an empty store work.
EMPTY = {
    "trials": "NULL::VARCHAR AS trial_id, NULL::BIGINT AS attempt, NULL::VARCHAR AS status, "
              "NULL::BOOLEAN AS success, NULL::BIGINT AS steps, NULL::DOUBLE AS wall_s, "
              "NULL::VARCHAR AS error, NULL::VARCHAR AS node, NULL::TIMESTAMPTZ AS finished_at",
    "metrics": "NULL::VARCHAR AS trial_id, NULL::BIGINT AS attempt, NULL::BIGINT AS step, "
               "NULL::BIGINT AS samples, NULL::DOUBLE AS wall_s",
    "sweeps": "NULL::VARCHAR AS sweep, NULL::VARCHAR AS spec, NULL::VARCHAR AS path, "
              "NULL::TIMESTAMPTZ AS submitted_at, NULL::VARCHAR[] AS trial_ids, NULL::VARCHAR[] AS axes, "
              "NULL::VARCHAR[] AS parameters, NULL::VARCHAR AS success_metric, NULL::VARCHAR AS success_op, "
              "NULL::DOUBLE AS success_value",
}

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


class Store:
    """A result store folder. Reading is safe from any number of processes while one run writes."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def files(self, table: str) -> list[Path]:
        """The live Parquet files of `table`, oldest first: committed and not replaced by compaction."""
        folder = self.root / table
        if not folder.is_dir():
            return []
        names = sorted(p.name for p in folder.glob("*.parquet"))
        present = set(names)
        hidden = {f for merged, replaced in _manifest(folder).items() if merged in present for f in replaced}
        return [folder / n for n in names if n not in hidden]

    def compact(self, table: str, min_files: int = 2) -> int:
        """Merge the live files of `table` into one file; returns how many files were merged.

        Only the holder of `lock()` may compact. Queries keep their answers throughout.

        Raises:
            StoreError: the store cannot be written.
        """
        files = self.files(table)
        if len(files) < min_files:
            return 0
        folder = self.root / table
        name = _new_name()
        tmp = folder / f".{name}.tmp"
        manifest = {m: r for m, r in _manifest(folder).items() if any((folder / f).exists() for f in r)}
        manifest[name] = [f.name for f in files]
        try:
            with duckdb.connect() as con:
                con.execute(f"COPY (SELECT * FROM {_scan(files)}) TO '{_sql_str(str(tmp))}' (FORMAT parquet)")
            _fsync(tmp)
            _write_atomic(folder / MANIFEST, json.dumps(manifest).encode())
            os.replace(tmp, folder / name)  # the one atomic step: from here on the merged file is live
        except (OSError, duckdb.Error) as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot compact {folder}: {e}") from None
        for f in files:
            f.unlink(missing_ok=True)
        return len(files)

    def connect(self, sweep: str | None = None) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the views `trials`, `metrics`, `sweeps`, `sweep_trials`
        (and the raw `trials_all`, `metrics_all`, `sweeps_all`). With `sweep`, `trials` and `metrics`
        hold only that sweep's trials.

        Raises:
            StoreError: the store folder does not exist or `sweep` is not in it.
        """
        if not self.root.is_dir():
            raise StoreError(f"no result store at {self.root} (run a sweep first, or pass --store PATH)")
        for retry in range(SNAPSHOT_RETRIES):
            con = duckdb.connect()
            try:
                self._views(con)
                break
            except duckdb.IOException:  # a file vanished under us: compaction replaced it
                con.close()
                if retry == SNAPSHOT_RETRIES - 1:
                    raise
        if sweep is not None:
            self._restrict(con, sweep)
        return con

    def _views(self, con: duckdb.DuckDBPyConnection) -> None:
        for table in TABLES:
            files = self.files(table)
            if files:  # a snapshot of the live files: connections are meant to be short-lived
                con.execute(f"CREATE VIEW {table}_all AS SELECT * FROM {_scan(files)}")
            else:
                con.execute(f"CREATE VIEW {table}_all AS SELECT {EMPTY[table]} WHERE false")
        # With no re-run attempt anywhere (the usual case) the latest-attempt views are the raw
        # tables; skipping their window and join makes a scan of 10^7 metric rows ~5x faster.
        retried = con.execute("SELECT (SELECT coalesce(max(attempt), 1) FROM trials_all) > 1 OR "
                              "(SELECT coalesce(max(attempt), 1) FROM metrics_all) > 1").fetchall()[0][0]
        for name in ("sweeps", "sweep_trials", "trials", "metrics"):
            body = VIEWS[name] if retried or name not in ("trials", "metrics") else f"SELECT * FROM {name}_all"
            con.execute(f"CREATE VIEW {name} AS {body}")

    def _restrict(self, con: duckdb.DuckDBPyConnection, sweep: str) -> None:
        names = [r[0] for r in con.execute("SELECT sweep FROM sweeps ORDER BY sweep").fetchall()]
        if sweep not in names:
            raise StoreError(f"unknown sweep {sweep!r}; in {self.root}: {', '.join(names) or 'none yet'}")
        # Every trial in a store was submitted in some sweep row; if all of them are in this sweep,
        # restricting to it changes nothing and its semi-join over the curves can be skipped.
        if con.execute("SELECT count(*) FROM sweeps_all").fetchall()[0][0] == 1:
            return
        con.execute("CREATE TEMP TABLE _ids AS SELECT trial_id FROM sweep_trials WHERE sweep = ?", [sweep])
        if con.execute("SELECT count(*) = 0 FROM (SELECT DISTINCT unnest(trial_ids) AS trial_id FROM sweeps_all) "
                       "WHERE trial_id NOT IN (SELECT trial_id FROM _ids)").fetchall()[0][0]:
            return
        con.execute(f"CREATE OR REPLACE VIEW trials AS SELECT * FROM ({VIEWS['trials']}) WHERE trial_id IN (SELECT trial_id FROM _ids)")
        con.execute(f"CREATE OR REPLACE VIEW metrics AS SELECT * FROM ({VIEWS['metrics']}) WHERE trial_id IN (SELECT trial_id FROM _ids)")

    def query(self, sql: str, params: list | None = None, sweep: str | None = None) -> pa.Table:
        """Run `sql` over the views and return the result as an Arrow table.

        Raises:
            StoreError: the SQL is invalid or fails; the message is DuckDB's.
        """
        for retry in range(SNAPSHOT_RETRIES):
            con = self.connect(sweep)
            try:
                rel = con.sql(sql, params=params or None)
                return rel.to_arrow_table() if rel is not None else pa.table({})
            except duckdb.IOException:
                if retry == SNAPSHOT_RETRIES - 1:  # a file vanished under us: take a new snapshot
                    raise
            except duckdb.Error as e:
                raise StoreError(f"query failed: {str(e).splitlines()[0]}") from None
            finally:
                con.close()

    def ended(self, retry_failed: bool = False) -> set[str]:
        """Ids of trials whose latest attempt ended (finished or diverged, and failed unless `retry_failed`)."""
        if not self.files("trials"):
            return set()
        ended = ["finished", "diverged"] + ([] if retry_failed else ["failed"])
        rows = self.query("SELECT trial_id FROM trials WHERE list_contains(?, status)", [ended]).column(0)
        return set(rows.to_pylist())

    def last_attempts(self) -> dict[str, int]:
        """The highest attempt number recorded for each trial, in `trials` or `metrics`."""
        if not self.files("trials") and not self.files("metrics"):
            return {}
        t = self.query("SELECT trial_id, max(attempt) FROM (SELECT trial_id, attempt FROM trials_all "
                       "UNION ALL SELECT trial_id, attempt FROM metrics_all) GROUP BY trial_id")
        return dict(zip(t.column(0).to_pylist(), t.column(1).to_pylist()))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the store's write lock: one run writes a store at a time.

        The lock is an `flock` on `<store>/.lock`, released by the kernel when its holder exits,
        so a crashed run never leaves a stale lock behind.

        Raises:
            StoreError: the store cannot be created, or another process holds the lock.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot write the result store at {self.root}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise StoreError(f"the store {self.root} is being written by another paretolab run "
                                 f"(pid {holder}); wait for it or use another --store") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)


class StoreWriter:
    """Buffers rows per table and appends them as new Parquet files.

    A file is written when a table holds `flush_rows` rows or `flush_every_s` seconds have passed
    since the last write. Only the process holding `Store.lock()` should write.
    """

    def __init__(self, store: Store, flush_rows: int = 50_000, flush_every_s: float = 2.0):
        self.store = store
        self.flush_rows = flush_rows
        self.flush_every_s = flush_every_s
        self._rows: dict[str, list[dict]] = {t: [] for t in TABLES}
        self._last = time.monotonic()

    def append(self, table: str, rows: list[dict]) -> None:
        self._rows[table].extend(rows)
        if len(self._rows[table]) >= self.flush_rows:
            self._write(table)

    def maybe_flush(self) -> None:
        """Write every buffered table if `flush_every_s` has passed since the last write."""
        if time.monotonic() - self._last >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row now."""
        for table in TABLES:
            self._write(table)
        self._last = time.monotonic()

    def _write(self, table: str) -> None:
        rows = self._rows[table]
        if not rows:
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = pa.table({c: pa.array([r.get(c) for r in rows]) for c in columns})
        folder = self.store.root / table
        folder.mkdir(parents=True, exist_ok=True)
        name = _new_name()
        tmp = folder / f".{name}.tmp"
        try:
            pq.write_table(data, tmp)
            _fsync(tmp)
            os.replace(tmp, folder / name)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write to the result store at {folder}: {e.strerror}") from None
        self._rows[table] = []


MANIFEST = "_compactions.json"


def _manifest(folder: Path) -> dict[str, list[str]]:
    """{merged file: [files it replaces]} of a table folder."""
    try:
        return json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return {}


def _new_name() -> str:
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    _fsync(tmp)
    os.replace(tmp, path)


def _scan(files: list[Path]) -> str:
    listed = ", ".join(f"'{_sql_str(str(f))}'" for f in files)
    return f"read_parquet([{listed}], union_by_name = true)"


def _sql_str(s: str) -> str:
    return s.replace("'", "''")

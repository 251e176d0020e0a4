"""One DuckDB database per snapshot of the store, shared by every query of that snapshot.

Each analysis function opens its own connection (`Store.connect`), and a connection is a new
DuckDB database with views over a fresh listing of the store's files: about 0.1 s each on a
10^7-row store, and a sweep page makes some fifteen. `SharedSnapshots` builds that database once
per snapshot (the names and sizes of the live files) and sweep, and hands each query a cursor of
it: a connection of its own (its temporary views and tables are its own), over the same views, the
same locked settings, and DuckDB's caches of the files' metadata. A new snapshot gets a new
database; the old one goes when its last cursor closes.

The database also holds the memo of the curves (`analysis.curve_memo`): the first success of every
trial under the success criteria of the store's sweeps, which the cells, the phase diagram, the
frontier, its quartiles and luck price trials from, and the trials with curves, which the status
counts, and the pool of curves that the bands over seeds and the transitions draw their sample
from. It is built from a summary of each metrics file and the file's rows of the pool, kept while
the file is live: a new snapshot scans its new files only, not the 10^7 rows again.

An object store's views read pyarrow datasets registered on their own connection: those are the
store's own connections, one per query, as before.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath

import duckdb
import pyarrow as pa

from paretolab.analysis import curve_memo
from paretolab.store import Store
from paretolab.store.store import SNAPSHOT_RETRIES
from paretolab.vocabulary.errors import StoreError
from paretolab.vocabulary.schema import TABLES
from paretolab.vocabulary.success import Success


class SharedSnapshots(Store):
    """`store` (the same location), whose read-only connections are cursors of one database per
    snapshot and sweep. Connections that may write files (`export`) are the store's own."""

    def __init__(self, store: Store):
        super().__init__(store.root if store.loc.local else store.uri)
        self._lock = threading.Lock()
        self._bases: dict[tuple, tuple[duckdb.DuckDBPyConnection, list]] = {}
        self._building: dict[tuple, threading.Lock] = {}
        self._reading = threading.Lock()
        self._alone: dict[tuple, bool] = {}  # (listing, sweep) -> whether it is the store's only sweep
        self._pools: dict[tuple, tuple[pa.Table, str]] = {}  # (sweeps files, pool size) -> pool ids, their digest
        self._summaries: dict[tuple, tuple[pa.Table, pa.Table]] = {}  # (criteria, pool, path, size) -> summary, pool rows

    def _listing(self) -> tuple:
        return tuple((t, e.name, e.size) for t in TABLES for e in self.loc.list(t))

    def _connect(self, sweep: str | None, locked: bool = True):
        if not locked or not self.loc.local:  # an object store's views read datasets registered on their connection
            return super()._connect(sweep, locked)
        listing = self._listing()  # listed once per connection: it keys the databases and `_alone`
        if sweep is not None:  # a store of this one sweep: its database is the store's (`Store._restrict`)
            base = self._base(listing, None)
            with self._lock:
                alone = self._alone.get((listing, sweep))
            if alone is None:
                with base[0].cursor() as con:
                    alone = con.execute("SELECT count(*) = 1 AND bool_and(sweep = ?) FROM sweeps_all", [sweep]).fetchall()[0][0]
                with self._lock:
                    self._alone = {k: v for k, v in self._alone.items() if k[0] == listing}
                    self._alone[(listing, sweep)] = alone
            if not alone:
                base = self._base(listing, sweep)
        else:
            base = self._base(listing, None)
        return base[0].cursor(), base[1]

    def _base(self, listing: tuple, sweep: str | None) -> tuple[duckdb.DuckDBPyConnection, list]:
        """The database of the snapshot `listing` (narrowed to `sweep`), built once however many
        parts ask for it at once."""
        key = (listing, sweep)
        with self._lock:
            gate = self._building.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                base = self._bases.get(key)
            if base is None:
                base = self._built(sweep)
                with self._lock:
                    self._bases = {k: v for k, v in self._bases.items() if k[0] == listing}
                    self._bases[key] = base
                    self._building = {k: v for k, v in self._building.items() if k[0] == listing}
        return base

    def _built(self, sweep: str | None):
        """A new database of the store's current files (`_prepare`d), read again from a new listing
        where a file vanished while the memo read it (a compaction merged it into another).

        Raises:
            StoreError: an unknown sweep, or files that keep changing.
        """
        for retry in range(SNAPSHOT_RETRIES):
            try:
                return super()._connect(sweep, locked=True)
            except duckdb.Error as e:
                if retry == SNAPSHOT_RETRIES - 1:
                    raise StoreError(f"cannot read the store at {self.uri}: {str(e).splitlines()[0]}") from None

    def _prepare(self, con: duckdb.DuckDBPyConnection, snapshot: list) -> None:
        """A database kept for many queries: the files' footers cached once, not read again by each
        query (and each `DESCRIBE`); the results, 10^5 rows, and the sweeps held in memory (the file
        scans and the legacy renames behind their views, done once); and the memo of the curves."""
        if not self.loc.local:
            return
        con.execute("SET parquet_metadata_cache = true")
        con.execute("CREATE TABLE main._sweeps_all AS SELECT * FROM sweeps_all")  # (the curves stay files: 10^7 rows)
        con.execute("CREATE OR REPLACE VIEW sweeps_all AS SELECT * FROM main._sweeps_all")
        # the results (10^5 rows) are read into memory while the memo is built, on a cursor of their own
        with con.cursor() as aside, ThreadPoolExecutor(1, thread_name_prefix="paretolab-serve-results") as pool:
            results = pool.submit(aside.execute, "CREATE TABLE main._trials_all AS SELECT * FROM trials_all")
            try:
                self._memoize(con, snapshot)
            finally:
                results.result()
        con.execute("CREATE OR REPLACE VIEW trials_all AS SELECT * FROM main._trials_all")

    def _memoize(self, con: duckdb.DuckDBPyConnection, snapshot: list) -> None:
        """The memo of the curves in `con`'s database, from the summaries of the snapshot's metrics
        files under every success criterion of the store's sweeps, and their rows of the pool
        (each file read once while the criteria and the pool stay the same)."""
        criteria = tuple(Success(*r) for r in con.execute(
            "SELECT DISTINCT success_metric, success_op, success_value FROM sweeps_all "
            "WHERE success_metric IS NOT NULL ORDER BY ALL").fetchall())
        size = curve_memo.pool_size(con)
        sweeps = tuple(e.name for e in snapshot if PurePosixPath(e.path).parent.name == "sweeps")
        with self._lock:
            pool, digest = self._pools.get((sweeps, size)) or (None, None)
        if pool is None:  # the pool changes only with the sweeps (or its size): kept with their files' names
            pool = curve_memo.pool_ids(con, size)
            digest = hashlib.blake2b("\0".join(pool.column("trial_id").to_pylist()).encode(), digest_size=8).hexdigest()
            with self._lock:
                self._pools = {(sweeps, size): (pool, digest)}
        files = [e for e in snapshot if PurePosixPath(e.path).parent.name == "metrics"]
        keys = [(criteria, digest, e.path, e.size) for e in files]
        with self._reading:  # the databases of one snapshot (a sweep's, the store's) read its new files once
            with self._lock:
                known = dict(self._summaries)
            new = curve_memo.read_files(con, [e.path for k, e in zip(keys, files) if k not in known], criteria, pool)
            read = [known[k] if k in known else new[e.path] for k, e in zip(keys, files)]
            with self._lock:  # the files of the newest snapshot (a compaction's merged files replace others)
                self._summaries = dict(zip(keys, read))
        curve_memo.memoize(con, read, criteria, pool)

"""The store conformance suite: what the result store must do on every backend (a local folder,
an object store such as S3, any filesystem pyarrow reaches through a URI).

`check_store(uri)` runs every check below, each in its own empty store under `uri`
(`<uri>/<check name>`); each can also run alone on an empty `Store`. Needs the backend's
credentials in the environment, as a run would.
"""

from __future__ import annotations

import threading

import pyarrow.parquet as pq

from paretolab.errors import StoreError
from paretolab.store import Store, StoreWriter
from paretolab.store.files import SEALED, seal_error
from paretolab.testing.expect import expect


def read_folder(store: Store, table: str):
    """What a plain pyarrow reader sees in a table's folder."""
    return pq.read_table(store.loc.path(table), filesystem=store.loc.fs)


def write_batches(store: Store, batches: int, rows: int = 10) -> None:
    """`batches` flushes of `rows` trials and 3 metric rows per trial each."""
    writer = StoreWriter(store)
    for b in range(batches):
        writer.append("trials", [{"trial_id": f"t{b}-{i}", "attempt": 1, "status": "finished", "x": b * rows + i}
                                 for i in range(rows)])
        writer.append("metrics", [{"trial_id": f"t{b}-{i}", "attempt": 1, "step": s, "loss": 1.0 / (s + 1)}
                                  for i in range(rows) for s in range(3)])
        writer.flush()


def check_whole_sealed_files(store: Store) -> None:
    """Each flush is one whole file, sealed (its name carries its CRC-32, which matches), with no
    temporary left; a plain pyarrow reader sees every row."""
    write_batches(store, 3)
    expect(len(store.files("trials")) == 3, f"3 flushes gave {len(store.files('trials'))} trials files")
    left = [e.name for t in ("trials", "metrics") for e in store.loc.list(t, suffix="") if not e.name.endswith(".parquet")]
    expect(not left, f"files other than Parquet left behind: {left}")
    for table in ("trials", "metrics"):
        for entry in store.loc.list(table):
            expect(SEALED.search(entry.name) and seal_error(store.loc, entry) is None, f"{entry.path} is not sealed whole")
    expect(read_folder(store, "trials").num_rows == 30, "a plain reader does not see the 30 rows written")


def check_cut_write_leaves_nothing(store: Store) -> None:
    """A write interrupted mid-file (Ctrl-C during a flush) leaves no file behind."""
    def write_then_fail(out):
        out.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # as Ctrl-C in the middle of a flush

    try:
        store.loc.put(("trials", "00000000000000000001-cut.parquet"), write_then_fail)
    except KeyboardInterrupt:
        pass
    else:
        expect(False, "the interrupt of a write was swallowed")
    expect(store.loc.list("trials", suffix="") == [], f"a cut write left {store.loc.list('trials', suffix='')}")


def check_columns_union(store: Store) -> None:
    """A column added later, and one that was only nulls, read back as one table."""
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "a", "attempt": 1, "train_size": None}])
    writer.flush()
    writer.append("trials", [{"trial_id": "b", "attempt": 1, "train_size": 100, "extra": "new"}])
    writer.flush()
    rows = store.query("SELECT trial_id, train_size, extra FROM trials ORDER BY 1").to_pylist()
    expect(rows == [{"trial_id": "a", "train_size": None, "extra": None},
                    {"trial_id": "b", "train_size": 100, "extra": "new"}], f"columns did not union: {rows}")


def check_latest_attempt_wins(store: Store) -> None:
    """The views show a trial's latest attempt, and the curve of its finished attempt (else its newest)."""
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "a", "attempt": 1, "status": "failed"},
                             {"trial_id": "a", "attempt": 2, "status": "finished"}])
    writer.append("metrics", [{"trial_id": "a", "attempt": a, "step": s} for a in (1, 2) for s in range(2)]
                  + [{"trial_id": "b", "attempt": 1, "step": 0}, {"trial_id": "b", "attempt": 2, "step": 0}])
    writer.flush()
    trials = store.query("SELECT attempt, status FROM trials").to_pylist()
    expect(trials == [{"attempt": 2, "status": "finished"}], f"the trials view shows {trials}")
    rows = store.query("SELECT trial_id, attempt FROM metrics ORDER BY ALL").to_pylist()
    # a: the finished attempt's curve; b (no result yet, e.g. running): its newest attempt
    expect(rows == [{"trial_id": "a", "attempt": 2}] * 2 + [{"trial_id": "b", "attempt": 2}], f"the metrics view shows {rows}")


def check_compaction(store: Store) -> None:
    """Compaction merges a table's files into one and every query answers as before."""
    write_batches(store, 12)
    queries = ["SELECT * FROM trials ORDER BY ALL", "SELECT * FROM metrics ORDER BY ALL"]
    before = [store.query(q).to_pylist() for q in queries]
    with store.lock():
        merged = (store.compact("trials"), store.compact("metrics"))
    expect(merged == (12, 12), f"compaction merged {merged} files of 12 and 12")
    expect(len(store.files("trials")) == 1 and len(store.loc.list("trials")) == 1, "compaction left several files")
    expect([store.query(q).to_pylist() for q in queries] == before, "a query answers differently after compaction")
    expect(read_folder(store, "trials").num_rows == 120, "a plain reader sees a row twice or not at all")


def check_one_writer(store: Store) -> None:
    """While one run holds the store's write lock, a second is refused; once released, it takes it."""
    first, second = Store(store.uri), Store(store.uri)
    with first.lock():
        try:
            with second.lock():
                expect(False, "a second writer got the lock while the first held it")
        except StoreError as e:
            expect("being written by another paretolab run" in str(e), f"the second writer was refused with {e}")
        StoreWriter(first).append("trials", [{"trial_id": "a", "attempt": 1}])
    with second.lock():  # released: the next run takes it at once
        pass


def check_reader_during_writes(store: Store, batches: int = 40) -> None:
    """A reader querying while a writer appends and compacts sees whole batches, each row once,
    and never loses a row it saw."""
    write_batches(store, 1)
    query = "SELECT count(*) AS n, count(DISTINCT (trial_id, step)) AS distinct_rows FROM metrics"
    seen, errors = [], []
    done = threading.Event()
    progress = threading.Condition()

    def read():
        try:
            while not done.is_set():
                row = store.query(query).to_pylist()[0]
                with progress:
                    seen.append(row)
                    progress.notify()
        except Exception as e:  # noqa: BLE001 - any failure of the reader is what this check looks for
            errors.append(e)
            with progress:
                progress.notify()

    def reader_caught_up(n_before: int) -> None:
        # pace the writer by the reader (not by time): each step overlaps at least one whole query
        with progress:
            progress.wait_for(lambda: len(seen) > n_before or errors)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        writer = StoreWriter(store)
        with store.lock():
            for b in range(1, batches):
                reader_caught_up(len(seen))
                writer.append("metrics", [{"trial_id": f"t{b}-{i}", "attempt": 1, "step": s, "loss": 0.5}
                                          for i in range(10) for s in range(3)])
                writer.flush()
                if b % 4 == 0:
                    store.compact("metrics")
    finally:
        done.set()
        reader.join()
    expect(not errors, f"the reader failed: {errors[:1]}")
    expect(len(seen) > 10, f"the reader overlapped only {len(seen)} writes")
    counts = [r["n"] for r in seen]
    expect(all(r["n"] == r["distinct_rows"] for r in seen), "the reader saw a row twice")
    expect(all(n % 30 == 0 for n in counts), f"the reader saw a partial batch: {counts}")
    expect(counts == sorted(counts), f"the reader lost rows it had seen: {counts}")
    expect(store.query(query).to_pylist()[0]["n"] == batches * 30, "rows are missing at the end")


CHECKS = (check_whole_sealed_files, check_cut_write_leaves_nothing, check_columns_union, check_latest_attempt_wins,
          check_compaction, check_one_writer, check_reader_during_writes)


def check_store(uri: str) -> None:
    """Every check of the store contract, each in an empty store `<uri>/<check name>`.

    Args:
        uri: a folder or a URI (`s3://bucket/prefix`, ...) where nothing is stored yet.
    Raises:
        ConformanceError: the first part of the contract the backend breaks.
    """
    for check in CHECKS:
        check(Store(f"{str(uri).rstrip('/')}/{check.__name__}"))

"""The result store on its own: atomic files, views on an empty store, schema evolution, compaction.

The core tests are the store's conformance test: they run on every backend, a local folder and an
S3-compatible server (moto's, on 127.0.0.1).
"""

from __future__ import annotations

import threading

import pyarrow.parquet as pq
import pytest

from paretolab.store import Store, StoreWriter
from paretolab.errors import StoreError


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """An empty store on each backend."""
    if request.param == "local":
        return Store(tmp_path)
    return Store(request.getfixturevalue("s3_store"))


def read_folder(store: Store, table: str):
    """What a plain pyarrow reader sees in a table's folder."""
    return pq.read_table(store.loc.path(table), filesystem=store.loc.fs)


def write_batches(store: Store, batches: int, rows: int = 10) -> None:
    writer = StoreWriter(store)
    for b in range(batches):
        writer.append("trials", [{"trial_id": f"t{b}-{i}", "attempt": 1, "status": "finished", "x": b * rows + i}
                                 for i in range(rows)])
        writer.append("metrics", [{"trial_id": f"t{b}-{i}", "attempt": 1, "step": s, "loss": 1.0 / (s + 1)}
                                  for i in range(rows) for s in range(3)])
        writer.flush()


def test_empty_store_has_queryable_views(tmp_path):
    store = Store(tmp_path)
    for view in ("trials", "metrics", "sweeps", "sweep_trials", "trials_all", "metrics_all"):
        assert store.query(f"SELECT count(*) FROM {view}").column(0)[0].as_py() == 0


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no result store at"):
        Store(tmp_path / "nowhere").query("SELECT 1")


def test_writes_are_whole_files_with_no_temporaries_left(store):
    write_batches(store, 3)
    assert len(store.files("trials")) == 3
    assert not [e for t in ("trials", "metrics") for e in store.loc.list(t, suffix="")
                if not e.name.endswith(".parquet")]
    assert read_folder(store, "trials").num_rows == 30


def test_a_write_cut_short_leaves_no_file(store):
    def write_then_fail(out):
        out.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # as Ctrl-C in the middle of a flush

    with pytest.raises(KeyboardInterrupt):
        store.loc.put(("trials", "00000000000000000001-cut.parquet"), write_then_fail)
    assert store.loc.list("trials", suffix="") == []


def test_columns_added_later_and_null_only_columns_union(store):
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "a", "attempt": 1, "train_size": None}])
    writer.flush()
    writer.append("trials", [{"trial_id": "b", "attempt": 1, "train_size": 100, "extra": "new"}])
    writer.flush()
    rows = store.query("SELECT trial_id, train_size, extra FROM trials ORDER BY 1").to_pylist()
    assert rows == [{"trial_id": "a", "train_size": None, "extra": None},
                    {"trial_id": "b", "train_size": 100, "extra": "new"}]


def test_latest_attempt_wins_in_views(store):
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "a", "attempt": 1, "status": "failed"},
                             {"trial_id": "a", "attempt": 2, "status": "finished"}])
    writer.append("metrics", [{"trial_id": "a", "attempt": a, "step": s} for a in (1, 2) for s in range(2)]
                  + [{"trial_id": "b", "attempt": 1, "step": 0}, {"trial_id": "b", "attempt": 2, "step": 0}])
    writer.flush()
    assert store.query("SELECT attempt, status FROM trials").to_pylist() == [{"attempt": 2, "status": "finished"}]
    rows = store.query("SELECT trial_id, attempt FROM metrics ORDER BY ALL").to_pylist()
    # a: the finished attempt's curve; b (no result yet, e.g. running): its newest attempt
    assert rows == [{"trial_id": "a", "attempt": 2}] * 2 + [{"trial_id": "b", "attempt": 2}]


def test_compaction_keeps_every_answer(store):
    write_batches(store, 12)
    queries = ["SELECT * FROM trials ORDER BY ALL", "SELECT * FROM metrics ORDER BY ALL"]
    before = [store.query(q).to_pylist() for q in queries]
    with store.lock():
        assert store.compact("trials") == 12 and store.compact("metrics") == 12
    assert len(store.files("trials")) == 1 and len(store.loc.list("trials")) == 1
    assert [store.query(q).to_pylist() for q in queries] == before
    assert read_folder(store, "trials").num_rows == 120  # plain readers see each row once


def test_reader_during_appends_and_compactions_sees_whole_batches_once(store):
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
        except Exception as e:  # noqa: BLE001 - any failure of the reader is what this test looks for
            errors.append(e)
            with progress:
                progress.notify()

    def reader_caught_up(n_before: int) -> None:
        # pace the writer by the reader (not by time): each step overlaps at least one whole query
        with progress:
            progress.wait_for(lambda: len(seen) > n_before or errors)

    reader = threading.Thread(target=read)
    reader.start()
    writer = StoreWriter(store)
    with store.lock():
        for b in range(1, 40):
            reader_caught_up(len(seen))
            writer.append("metrics", [{"trial_id": f"t{b}-{i}", "attempt": 1, "step": s, "loss": 0.5}
                                      for i in range(10) for s in range(3)])
            writer.flush()
            if b % 4 == 0:
                store.compact("metrics")
    done.set()
    reader.join()
    assert not errors
    assert len(seen) > 10
    counts = [r["n"] for r in seen]
    assert all(r["n"] == r["distinct_rows"] for r in seen)  # never a duplicated row
    assert all(n % 30 == 0 for n in counts)                 # never a partial batch
    assert counts == sorted(counts)                         # never a row lost once seen
    assert store.query(query).to_pylist()[0]["n"] == 40 * 30


def test_export_is_a_self_describing_copy_of_one_sweep(tmp_path, make_store):
    import duckdb
    import pandas as pd
    import polars as pl

    from paretolab.analysis.export import export

    trials = [{"trial_id": f"a{i}", "width": 8 * (i % 2 + 1), "seed": i} for i in range(4)]
    metrics = [{"trial_id": t["trial_id"], "step": s, "samples": s * 2, "test_error": 0.5 - 0.1 * s}
               for t in trials for s in range(3)]
    root = make_store(tmp_path / "r", "a", ["width"], trials, metrics)
    make_store(root, "other", ["width"], [{"trial_id": "b0", "width": 99}], [])  # must not leak into the export
    counts = export(Store(root), "a", tmp_path / "out")
    assert counts == {"trials.parquet": 4, "metrics.parquet": 12, "sweep.parquet": 1}
    assert sorted(pd.read_parquet(tmp_path / "out" / "trials.parquet")["trial_id"]) == ["a0", "a1", "a2", "a3"]
    assert pl.read_parquet(tmp_path / "out" / "metrics.parquet").height == 12
    assert duckdb.sql(f"SELECT axes FROM '{tmp_path / 'out' / 'sweep.parquet'}'").fetchall() == [(["width"],)]
    meta = pq.read_schema(tmp_path / "out" / "trials.parquet").metadata
    assert meta[b"paretolab.sweep"] == b"a" and meta[b"paretolab.success"] == b"test_error <= 0.1"
    assert b"learning curves" in pq.read_schema(tmp_path / "out" / "metrics.parquet").metadata[b"paretolab.description"]


def test_the_readers_an_adaptive_search_asks(make_store, tmp_path):
    """`results`, `step_quantiles` and `step_span`: what the strategies read instead of writing SQL."""
    nan = float("nan")
    trials = [{"trial_id": "a"}, {"trial_id": "b", "status": "failed"}, {"trial_id": "c", "status": "pruned"}]
    curves = {"a": [0.75, 0.5, 0.125], "b": [0.25, nan], "c": [0.5, 0.25, 0.375]}  # sums exact in binary
    metrics = [{"trial_id": t, "step": 100 * i, "samples": 3200 * i, "test_error": v}
               for t, vs in curves.items() for i, v in enumerate(vs)]
    st = Store(make_store(tmp_path / "r", "s", ["width"], trials, metrics))
    assert sorted(r["trial_id"] for r in st.results(["a", "b", "c", "x"])) == ["a", "b", "c"]
    assert sorted(r["trial_id"] for r in st.results(["a", "b"], retry_failed=True)) == ["a"]
    assert st.results([]) == [] and Store(tmp_path / "empty").results(["a"]) == []
    assert st.step_quantiles(["a", "b"], "test_error", 0.5) == [(0, 0.5), (100, 0.5), (200, 0.125)]  # NaN left out
    assert st.step_quantiles(["a", "c"], "test_error", 0.25, steps=[0, 200]) == [(0, 0.5625), (200, 0.1875)]
    assert st.step_quantiles(["a"], "test_error", 0.5, steps=[]) == []
    assert st.step_span(["a", "b"]) == (100, 200) and st.step_span(["x"]) is None

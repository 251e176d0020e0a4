"""The result store on its own: atomic files, views on an empty store, schema evolution, compaction.

The core tests are the store's conformance test, the checks of the shipped suite
(`paretolab.testing.stores`): they run on every backend, a local folder and an S3-compatible server
(moto's, on 127.0.0.1; slow).
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from paretolab.store import Store
from paretolab.errors import StoreError
from paretolab.testing import check_store
from paretolab.testing import stores as conformance


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.slow)])
def store(request, tmp_path):
    """An empty store on each backend."""
    if request.param == "local":
        return Store(tmp_path)
    return Store(request.getfixturevalue("s3_store"))


def test_empty_store_has_queryable_views(tmp_path):
    store = Store(tmp_path)
    for view in ("trials", "metrics", "sweeps", "sweep_trials", "trials_all", "metrics_all"):
        assert store.query(f"SELECT count(*) FROM {view}").column(0)[0].as_py() == 0


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(StoreError, match="no result store at"):
        Store(tmp_path / "nowhere").query("SELECT 1")


def test_writes_are_whole_files_with_no_temporaries_left(store):
    conformance.check_whole_sealed_files(store)


def test_a_write_cut_short_leaves_no_file(store):
    conformance.check_cut_write_leaves_nothing(store)


def test_columns_added_later_and_null_only_columns_union(store):
    conformance.check_columns_union(store)


def test_latest_attempt_wins_in_views(store):
    conformance.check_latest_attempt_wins(store)


def test_compaction_keeps_every_answer(store):
    conformance.check_compaction(store)


def test_a_second_writer_waits_for_the_first(store):
    conformance.check_one_writer(store)


def test_reader_during_appends_and_compactions_sees_whole_batches_once(store):
    conformance.check_reader_during_writes(store)


@pytest.mark.slow  # every check again, in one call: the tests above run each on its own
def test_the_whole_suite_runs_on_a_folder_as_a_plugin_runs_it(tmp_path):
    check_store(str(tmp_path / "backend"))
    assert sorted(p.name for p in (tmp_path / "backend").iterdir()) == sorted(c.__name__ for c in conformance.CHECKS)


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

"""The result store on its own: atomic files, views on an empty store, schema evolution, compaction.

The core tests are the store's conformance test, the checks of the shipped suite
(`paretolab.testing.stores`): they run on every backend, a local folder and an S3-compatible server
(moto's, on 127.0.0.1; slow).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from paretolab.orchestrator.strategy import Outcome, cell_score
from paretolab.store import Store, StoreWriter
from paretolab.store.writer import SCHEMA_STEM
from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import Code, TrialConfig
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


def old_shape(store: Store) -> None:
    """Files as a store holds them from before final metrics were `final_<metric>` columns, written
    with pyarrow alone: trials rows with the curve's names (`test_error`) and no `stopped_at_success`;
    a parameter `loss` (sparse parity's) that another sweep's curves have as a metric; trial `c` of
    that sweep has a curve and no result yet."""
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    base = {"attempt": 1, "status": "finished", "task": "sparse_parity", "loss": "hinge", "seed": 0, "node": "n0",
            "finished_at": when, "error": None}
    trials = [{**base, "trial_id": "a", "width": 16, "steps": 200, "success": True, "steps_to_success": 200,
               "train_loss": 0.25, "train_error": 0.0, "test_error": 0.0625},
              {**base, "trial_id": "b", "width": 32, "steps": 300, "success": False, "steps_to_success": None,
               "train_loss": 0.5, "train_error": 0.125, "test_error": 0.5}]
    metrics = [{"trial_id": t, "attempt": 1, "step": 0, "samples": 0, "wall_s": 0.0, "train_loss": None,
                "train_error": None, "test_error": 1.0, "loss": None} for t in ("a", "b")]
    metrics += [{"trial_id": "c", "attempt": 1, "step": 0, "samples": 0, "wall_s": 0.0, "train_loss": None,
                 "train_error": None, "test_error": 0.5, "loss": 0.75}]
    sweeps = [{"sweep": "old", "spec": "", "path": "", "submitted_at": when, "trial_ids": ["a", "b"], "axes": ["width"],
               "parameters": ["task", "width", "loss", "seed"], "success_metric": "test_error", "success_op": "<=",
               "success_value": 0.1},
              {"sweep": "own", "spec": "", "path": "", "submitted_at": when, "trial_ids": ["c"], "axes": [],
               "parameters": ["trainable", "seed"], "success_metric": "loss", "success_op": "<=", "success_value": 0.1}]
    for table, rows in (("trials", trials), ("metrics", metrics), ("sweeps", sweeps)):
        data = pa.Table.from_pylist(rows)
        store.loc.put((table, f"0000000000000000000{len(rows)}-old.parquet"), lambda out: pq.write_table(data, out))


def test_a_store_written_before_final_metrics_were_named_reads_with_todays_names(store):
    old_shape(store)
    finals = "trial_id, final_train_loss, final_train_error, final_test_error, stopped_at_success, loss"
    got = store.query(f"SELECT {finals} FROM trials ORDER BY trial_id").to_pylist()
    assert got == [{"trial_id": "a", "final_train_loss": 0.25, "final_train_error": 0.0, "final_test_error": 0.0625,
                    "stopped_at_success": None, "loss": "hinge"},  # not recorded then; a parameter keeps its name
                   {"trial_id": "b", "final_train_loss": 0.5, "final_train_error": 0.125, "final_test_error": 0.5,
                    "stopped_at_success": None, "loss": "hinge"}]
    assert not {"test_error", "train_loss", "train_error"} & set(store.trials().column_names)
    # a run appends rows of today's shape: both kinds read as one table, under one set of names
    writer = StoreWriter(store)
    writer.append("trials", [{"trial_id": "d", "attempt": 1, "status": "finished", "task": "sparse_parity",
                              "width": 64, "loss": "hinge", "seed": 0, "success": True, "stopped_at_success": True,
                              "final_train_loss": 0.125, "final_test_error": 0.0}])
    writer.flush()
    (lead,) = [f for f in store.files("trials") if f.name.startswith(SCHEMA_STEM)]  # for plain readers: every column
    assert "test_error" in pq.read_schema(store.loc.fs.open_input_file(lead.as_posix())).names  # which the views drop
    before = store.query("SELECT * FROM trials ORDER BY trial_id")
    assert not {"test_error", "train_loss", "train_error"} & set(before.column_names)
    assert before.select(["trial_id", "final_test_error", "stopped_at_success"]).to_pylist() == [
        {"trial_id": "a", "final_test_error": 0.0625, "stopped_at_success": None},
        {"trial_id": "b", "final_test_error": 0.5, "stopped_at_success": None},
        {"trial_id": "d", "final_test_error": 0.0, "stopped_at_success": True}]
    # what a search reads of a stored trial: the objective `test_error` is its final value
    outcomes = [Outcome.of_row(r) for r in store.results(["a", "b", "d"])]
    config = TrialConfig("a", None, None, None, None, None, 0, None, None, Success(), Code("function", "train.py:main"))
    assert cell_score("test_error", config, outcomes) == 0.0625  # the median of 0.0625, 0.5 and 0.0
    # compaction rewrites the old rows in today's shape, and every answer stays
    assert store.compact("trials") == 3
    (merged,) = store.files("trials")
    names = pq.read_schema(store.loc.fs.open_input_file(merged.as_posix())).names
    assert "stopped_at_success" in names and not {"test_error", "train_loss", "train_error"} & set(names)
    assert store.query("SELECT * FROM trials ORDER BY trial_id") == before

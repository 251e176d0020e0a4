"""Any Parquet reader sees every column of the store's folders, compacted or not: a store holding
sweeps of two tasks (the flip-flop columns arrive after the sparse-parity ones) read by pyarrow,
pandas, polars and DuckDB straight from `results/trials` and `results/metrics`."""

from __future__ import annotations

import duckdb
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest

import paretolab

PARITY = {"task": "sparse_parity", "width": 16, "n": 20}
FLIPFLOP = {"task": "flipflop", "p_ignore": 0.9, "length": 64}


@pytest.fixture
def mixed(make_store, tmp_path):
    root = tmp_path / "r"
    make_store(root, "parity", ["width"], [{"trial_id": "t1", **PARITY}],
               [{"trial_id": "t1", "step": 0, "samples": 0, "test_error": 0.5}])
    make_store(root, "flipflop", ["p_ignore"], [{"trial_id": "t2", **FLIPFLOP}],
               [{"trial_id": "t2", "step": 0, "samples": 0, "test_error": 0.4, "glitch_rate": 0.1}])
    make_store(root, "parity2", ["width"], [{"trial_id": "t3", **PARITY, "width": 32}],
               [{"trial_id": "t3", "step": 0, "samples": 0, "test_error": 0.3}])
    return root


READERS = {
    "pyarrow": lambda folder: pq.read_table(folder).to_pylist(),
    "pandas": lambda folder: pd.read_parquet(folder).astype(object).where(lambda f: f.notna(), None).to_dict("records"),
    "polars": lambda folder: pl.read_parquet(f"{folder}/*.parquet", missing_columns="insert").to_dicts(),
    "duckdb": lambda folder: [dict(zip(r.columns, row)) for r in [duckdb.sql(
        f"SELECT * FROM read_parquet('{folder}/*.parquet', union_by_name = true)")] for row in r.fetchall()],
}


@pytest.mark.parametrize("compacted", [False, True], ids=["uncompacted", "compacted"])
@pytest.mark.parametrize("reader", list(READERS))
def test_every_reader_sees_every_column(mixed, reader, compacted):
    store = paretolab.open_store(mixed)
    if compacted:
        assert store.compact("trials") and store.compact("metrics")
    trials = {r["trial_id"]: r for r in READERS[reader](mixed / "trials")}
    assert sorted(trials) == ["t1", "t2", "t3"]
    assert (trials["t2"]["p_ignore"], trials["t2"]["length"]) == (0.9, 64)
    assert (trials["t3"]["width"], trials["t3"]["p_ignore"]) == (32, None)
    metrics = {r["trial_id"]: r for r in READERS[reader](mixed / "metrics")}
    assert (metrics["t2"]["glitch_rate"], metrics["t1"]["glitch_rate"]) == (0.1, None)


def test_the_schema_file_holds_no_rows_and_one_is_kept(mixed):
    names = sorted(p.name for p in (mixed / "trials").iterdir())
    schema_files = [n for n in names if n.startswith("0" * 20 + "-schema")]
    assert len(schema_files) == 1 and names[0] == schema_files[0]
    assert pq.read_table(mixed / "trials" / names[0]).num_rows == 0
    # the store's own views count each trial once
    assert paretolab.open_store(mixed).query("SELECT count(*) AS n FROM trials").to_pylist() == [{"n": 3}]


def test_one_task_needs_no_schema_file(make_store, tmp_path):
    root = tmp_path / "r"
    for i in range(3):
        make_store(root, f"s{i}", ["width"], [{"trial_id": f"t{i}", **PARITY}],
                   [{"trial_id": f"t{i}", "step": 0, "samples": 0, "test_error": 0.5}])
    assert not any(p.name.startswith("0" * 20) for p in (root / "trials").iterdir())


def test_a_column_of_two_types_is_read_as_text(make_store, tmp_path):
    """`loss` is a parameter (`hinge`) of one sweep and a number of another: the write never fails,
    and the schema file types the column as text, which both cast to."""
    root = tmp_path / "r"
    make_store(root, "a", ["width"], [{"trial_id": "t1", "width": 16, "loss": "hinge"}],
               [{"trial_id": "t1", "step": 0, "samples": 0, "test_error": 0.5}])
    make_store(root, "b", ["lr"], [{"trial_id": "t2", "lr": 0.1, "loss": 0.25}],
               [{"trial_id": "t2", "step": 0, "samples": 0, "test_error": 0.4}])
    got = {r["trial_id"]: r["loss"] for r in pq.read_table(root / "trials").to_pylist()}
    assert got == {"t1": "hinge", "t2": "0.25"}
    rows = paretolab.open_store(root).query("SELECT trial_id, loss FROM trials ORDER BY 1").to_pylist()
    assert [r["loss"] for r in rows] == ["hinge", "0.25"]


@pytest.mark.parametrize("reader", list(READERS))
def test_a_column_a_later_sweep_leaves_null_keeps_the_stored_type(make_store, tmp_path, reader):
    # sparse parity's train_size is an integer, NULL when training is online; a later sweep that is
    # all online wrote it as a number, and polars refused the folder (Float64 against Int64)
    root = tmp_path / "r"
    make_store(root, "fixed", ["train_size"], [{"trial_id": "t1", **PARITY, "train_size": 500}])
    make_store(root, "online", ["width"], [{"trial_id": "t2", **PARITY, "train_size": None}])
    rows = sorted(READERS[reader](root / "trials"), key=lambda r: r["trial_id"])
    assert [r["train_size"] for r in rows] == [500, None]

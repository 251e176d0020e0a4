"""Results as frames: `store.trials()` and `store.metrics()` return Arrow tables of the views (the
latest attempt), which pandas and polars take as they are; `dir(paretolab)` lists the public API."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

import paretolab
from paretolab.errors import UsageError


@pytest.fixture
def store(make_store, tmp_path):
    root = tmp_path / "r"
    make_store(root, "a", ["width"], [{"trial_id": f"a{i}", "width": 16 * (i + 1)} for i in range(2)],
               [{"trial_id": f"a{i}", "step": s, "samples": s, "test_error": 0.5 - s / 10} for i in range(2) for s in (0, 1)])
    make_store(root, "b", ["lr"], [{"trial_id": "b0", "lr": 0.1}],
               [{"trial_id": "b0", "step": 0, "samples": 0, "test_error": 0.4}])
    return paretolab.open_store(root)


def test_trials_of_a_sweep_and_chosen_columns(store):
    assert store.trials("a", columns=["trial_id", "width"]).to_pylist() == [
        {"trial_id": "a0", "width": 16}, {"trial_id": "a1", "width": 32}]
    assert store.trials().num_rows == 3
    frame = store.trials("b").to_pandas()
    assert list(frame["trial_id"]) == ["b0"] and frame["lr"][0] == 0.1


def test_metrics_by_sweep_or_trials(store):
    assert store.metrics("a").num_rows == 4
    rows = store.metrics(trial_ids=["a1", "b0"]).to_pylist()
    assert [(r["trial_id"], r["step"]) for r in rows] == [("a1", 0), ("a1", 1), ("b0", 0)]
    frame = pl.from_arrow(store.metrics("b"))
    assert frame["test_error"].to_list() == [0.4]


def test_an_unknown_column_is_named(store):
    with pytest.raises(UsageError, match="unknown column 'nope' of trials; it has: .*trial_id"):
        store.trials(columns=["trial_id", "nope"])


def test_dir_lists_the_public_api_without_importing_torch_or_ray():
    assert {"run", "open_store", "load_spec", "sweep", "session", "shutdown", "ParetolabError"} <= set(dir(paretolab))
    assert "annotations" not in dir(paretolab)  # (from __future__), not an API
    code = "import sys, paretolab\ndir(paretolab)\nhelp(paretolab)\nprint(sorted({'torch', 'ray'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]" and "open_store(path_or_uri)" in out.stdout

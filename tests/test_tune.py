"""Per-cell tuning: spec errors, and a real two-phase run whose choices match the first phase's cells."""

from __future__ import annotations

import subprocess

import pytest

import paretolab
from paretolab.analysis.cells import cells
from paretolab.cli import main
from paretolab.errors import SpecError
from paretolab.spec import parse_yaml

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """\
sweep: tuned
task: sparse_parity
task_args: {n: 10, k: 3}
model: mlp
grid:
  width: [16, 64]
  train_size: [128, 1024]
fixed: {batch_size: 32, weight_decay: 0.01}
seeds: 4
max_steps: 1000
eval: {every: 50, test_size: 256}
success: {metric: test_error, op: "<=", value: 0.1}
"""


@pytest.mark.parametrize("tune, message", [
    ("{param: lrr, values: [0.1, 0.2]}", "tune.param: unknown parameter 'lrr'"),
    ("{param: lr, values: [0.1]}", "tune.values: expected a list of at least two values of lr"),
    ("{param: lr, values: [0.1, fast]}", "tune.values: expected a finite number, got 'fast'"),
    ("{param: lr, values: [0.1, 0.2], select: fastest}", "tune.select: expected 'min METRIC' or 'max METRIC'"),
    ("{param: lr, values: [0.1, 0.2], select: min accuracy}", "tune.select: expected 'min METRIC' or 'max METRIC'"),
    ("{param: lr, values: [0.1, 0.2], seeds: 5}", "tune.seeds: 5 is more than the spec's 4 seeds"),
    ("{param: width, values: [8, 16]}", "tune.param: 'width' is also set elsewhere in the spec"),
    ("{param: lr, values: [0.1, 0.2], by: width}", "tune.by: unknown key"),
])
def test_spec_errors(tune, message):
    with pytest.raises(SpecError) as e:
        parse_yaml(SPEC + f"tune: {tune}\n", "t.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_tune_and_search_do_not_combine():
    with pytest.raises(SpecError, match="tune: per-cell tuning runs over a grid, not with a search"):
        parse_yaml(SPEC + "tune: {param: lr, values: [0.1, 0.2]}\nsearch: {mode: frontier, axis: train_size}\n")


def test_each_cell_runs_its_full_budget_at_the_value_its_first_seeds_chose(ray_cluster, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(SPEC + "tune: {param: lr, values: [0.02, 0.3], select: min steps_to_success, seeds: 2}\n")
    summary = paretolab.run(path, store=tmp_path / "r")
    store = paretolab.open_store(tmp_path / "r")
    rows, distinct = store.query("SELECT count(*), count(DISTINCT trial_id) FROM trials_all").to_pylist()[0].values()
    assert rows == distinct == summary.ran == 4 * (2 * 2 + 2)  # 4 cells: 2 values x 2 seeds, then 2 more seeds

    first = cells(store, "tuned.tune").to_pylist()  # the first phase, with lr as an axis
    assert len(first) == 8 and all(c["n_seeds"] == 2 for c in first)
    final = cells(store, "tuned").to_pylist()
    assert len(final) == 4 and all(c["n_seeds"] == 4 for c in final)
    chosen = {(r["width"], r["train_size"]): r["lr"] for r in summary.search.rows()}
    assert all("median_steps_to_success" in r and "steps_to_success" not in r for r in summary.search.rows())
    per_cell = store.query("SELECT width, train_size, list(DISTINCT lr) AS lrs FROM trials GROUP BY ALL",
                           sweep="tuned").to_pylist()
    assert {(r["width"], r["train_size"]): r["lrs"] for r in per_cell} == {k: [v] for k, v in chosen.items()}
    for key, lr in chosen.items():
        ranked = [(2 * c["successes"] < c["n_seeds"], c["median_steps_to_success"] or 0, -c["successes"], c["lr"])
                  for c in first if (c["width"], c["train_size"]) == key]
        assert lr == min(ranked)[-1], (key, ranked)

    again = paretolab.run(path, store=tmp_path / "r")
    assert again.ran == 0 and again.search.rows() == summary.search.rows()
    out = subprocess.run(["paretolab", "run", str(path), "--store", str(tmp_path / "r"),
                          "--address", ray_cluster.get_runtime_context().gcs_address],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "lr chosen per cell by steps_to_success" in out.stdout and "paretolab cells --sweep tuned.tune" in out.stdout


def test_a_killed_tuning_resumes_without_rerunning_stored_trials(ray_cluster, driver, count_in, tmp_path, capsys):
    path = tmp_path / "t.yaml"
    # one trial per worker call and every trial to max_steps: the second phase lasts seconds
    path.write_text(SPEC.replace("sweep: tuned", "sweep: killed").replace("seeds: 4", "seeds: 8")
                    .replace("max_steps: 1000", "max_steps: 2000").replace('value: 0.1}', 'value: 0.1, stop_on_success: false}')
                    + "resources: {cpu: 1, pack_size: 1}\n"
                    + "tune: {param: lr, values: [0.02, 0.3], select: min steps_to_success, seeds: 2}\n")
    store = tmp_path / "r"
    every = 4 * (2 * 2 + 6)  # 4 cells: 2 values x seeds 0, 1; then seeds 2..7 at the chosen value
    child = driver(path, store)
    # killed once some cell's second phase has begun (the first phase ran first: other cells are
    # still in it or waiting for their choice's seeds)
    child.wait_until(lambda: count_in(store, "SELECT count(*) FROM trials WHERE seed >= 2") >= 1,
                     "a second-phase trial in the store")
    child.kill()
    before = {r["trial_id"]: r for r in paretolab.open_store(store).query(
        "SELECT trial_id, attempt, finished_at FROM trials_all").to_pylist()}
    assert len(before) < every  # it really was cut short

    capsys.readouterr()
    assert main(child.command[1:]) == 0  # the same command, in this process on the same Ray
    out = capsys.readouterr().out
    assert f"killed: {every} trials ({every - len(before)} run now, {len(before)} already in the store)" in out
    store_ = paretolab.open_store(store)
    after = store_.query("SELECT trial_id, attempt, finished_at FROM trials_all").to_pylist()
    assert len(after) == len({r["trial_id"] for r in after}) == every  # every trial once
    assert all(before[r["trial_id"]] == r for r in after if r["trial_id"] in before)  # none of them rerun

    # each cell's choice is what its first-phase results choose (as an uninterrupted run does)
    first = cells(store_, "killed.tune").to_pylist()
    assert len(first) == 8 and all(c["n_seeds"] == 2 for c in first)
    chosen = {(r["width"], r["train_size"]): r["lrs"] for r in store_.query(
        "SELECT width, train_size, list(DISTINCT lr) AS lrs FROM trials GROUP BY ALL", sweep="killed").to_pylist()}
    assert len(chosen) == 4 and all(c["n_seeds"] == 8 for c in cells(store_, "killed").to_pylist())
    for key, lrs in chosen.items():
        ranked = [(2 * c["successes"] < c["n_seeds"], c["median_steps_to_success"] or 0, -c["successes"], c["lr"])
                  for c in first if (c["width"], c["train_size"]) == key]
        assert lrs == [min(ranked)[-1]], (key, ranked)
    again = paretolab.run(path, store=store)
    assert again.ran == 0 and {(r["width"], r["train_size"]): [r["lr"]] for r in again.search.rows()} == chosen

"""Frontier search: bisection logic on synthetic outcomes, then against the full grid on real Ray."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import paretolab
from paretolab.analysis.cells import cells
from paretolab.errors import SpecError
from paretolab.orchestrator.frontier_search import FrontierSearchStrategy, wilson
from paretolab.orchestrator.grid import expand
from paretolab.orchestrator.strategy import Outcome
from paretolab.spec import parse_yaml

pytestmark = pytest.mark.usefixtures("one_thread")

# Offline (10, 3)-sparse parity: the smallest training set that gets half the seeds to 10% test error
# within 1000 steps is a clear step along a 15-value log grid (measured: width 16 at 91 examples,
# width 64 at 128, every smaller size 0/8, every size from 181 up 8/8).
PROBLEM = """\
sweep: {name}
task: sparse_parity
task_args: {{n: 10, k: 3}}
model: mlp
grid:
  width: [16, 64]
  train_size: {{logspace: [16, 2048, 15]}}
fixed: {{lr: 0.1, batch_size: 32, weight_decay: 0.01}}
seeds: 8
max_steps: 1000
eval: {{every: 100, test_size: 256}}
success: {{metric: test_error, op: "<=", value: 0.1}}
"""
SEARCH = "search: {mode: frontier, axis: train_size, by: [width], seeds_per_probe: 4, max_seeds: 8}\n"


def run_synthetic(spec_text: str, p_of) -> tuple[FrontierSearchStrategy, set[str]]:
    """Drive the strategy with outcomes drawn from `p_of(width, train_size, seed_index)` -> success."""
    sweep = parse_yaml(spec_text)
    strategy = FrontierSearchStrategy(sweep, list(expand(sweep)))
    ran = set()
    while not strategy.done():
        batch = strategy.propose()
        assert batch, "the strategy must propose while it is not done (no outcome is outstanding here)"
        for t in batch:
            assert t.trial_id not in ran
            ran.add(t.trial_id)
            ok = p_of(t.model_args.width, t.task_args.train_size, sweep.seeds.index(t.seed))
            strategy.observe(t, Outcome(t.trial_id, "finished", ok))
    return strategy, ran


def test_bisection_finds_a_sharp_boundary_with_few_probes():
    boundary = {16: 91, 64: 362}
    strategy, ran = run_synthetic(PROBLEM.format(name="s") + SEARCH,
                                  lambda w, m, i: m >= boundary[w])
    rows = {r["width"]: r for r in strategy.result().rows()}
    for w, b in boundary.items():
        assert rows[w]["status"] == "crossed" and rows[w]["boundary"] == b
        assert rows[w]["ci_low"] == rows[w]["below"] and rows[w]["ci_high"] == b  # 4/4 and 0/4 are decisive
        assert rows[w]["probes"] <= 5 and rows[w]["n_above"] == 4  # log2(16) probes, no seed added
    assert len(ran) <= 40 < 240 / 3


def test_uncertain_probes_get_more_seeds_and_ends_are_reported():
    # width 16: p = 1/2 from 128 up (4 of 8 seeds: the 4 first seeds straddle, so seeds are added);
    # width 64: every size succeeds ("always")
    strategy, _ = run_synthetic(PROBLEM.format(name="s") + SEARCH,
                                lambda w, m, i: w == 64 or (m >= 128 and i % 2 == 0))
    rows = {r["width"]: r for r in strategy.result().rows()}
    assert rows[16]["boundary"] == 128 and rows[16]["n_above"] == 8 and rows[16]["p_above"] == 0.5
    assert rows[16]["ci_high"] is None  # 4/8 bounds nothing at 95%
    assert rows[64]["status"] == "always" and rows[64]["boundary"] == 16 and rows[64]["below"] is None
    never, _ = run_synthetic(PROBLEM.format(name="s") + SEARCH, lambda w, m, i: False)
    assert {r["status"] for r in never.result().rows()} == {"never"}
    assert all(r["boundary"] is None and r["ci_low"] == 2048 for r in never.result().rows())


def test_wilson_matches_the_cells_table(make_store, tmp_path):
    trials = [{"trial_id": f"t{i}", "width": 1, "success": i < 3} for i in range(7)]
    metrics = [{"trial_id": f"t{i}", "step": 0, "samples": 0, "test_error": 0.0 if i < 3 else 1.0} for i in range(7)]
    store = paretolab.open_store(make_store(tmp_path / "r", "w", ["width"], trials, metrics))
    row = cells(store, "w").to_pylist()[0]
    assert wilson(3, 7) == pytest.approx((row["p_lo"], row["p_hi"]), abs=1e-12)


@pytest.mark.parametrize("search, message", [
    ("{mode: frontier, axis: lr}", "search.axis: 'lr' is not a grid or zip axis"),
    ("{mode: frontier, axis: train_size, by: [depth]}", "search.by: expected a list of the other grid/zip axes"),
    ("{mode: frontier, axis: train_size, target_success: 1.5}", "search.target_success: expected a probability"),
    ("{mode: frontier, axis: train_size, seeds_per_probe: 9}", "need seeds_per_probe (9) <= max_seeds (8)"),
    ("{mode: frontier, axis: train_size, bisect: true}", "search.bisect: unknown key"),
    ("{mode: bisection, axis: train_size}", "search.mode: unknown mode 'bisection'; known: frontier, optuna"),
])
def test_spec_errors(search, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_yaml(PROBLEM.format(name="s") + f"search: {search}\n")


def test_same_boundary_as_the_full_grid_with_3x_fewer_trials(ray_cluster, tmp_path):
    (tmp_path / "search.yaml").write_text(PROBLEM.format(name="search") + SEARCH)
    (tmp_path / "grid.yaml").write_text(PROBLEM.format(name="grid"))
    store = tmp_path / "r"
    searched = paretolab.run(tmp_path / "search.yaml", store=store)
    assert searched.ran == searched.total == searched.search.trials
    grid = paretolab.run(tmp_path / "grid.yaml", store=store)  # reuses the search's trials: same ids
    assert grid.total == 240 and grid.already_done == searched.total
    assert grid.total >= 3 * searched.total

    values = sorted({t.task_args.train_size for t in expand(parse_yaml(PROBLEM.format(name="g")))})
    table = cells(paretolab.open_store(store), "grid").to_pylist()
    for row in searched.search.rows():
        grid_boundary = min(c["train_size"] for c in table if c["width"] == row["width"] and c["p_success"] >= 0.5)
        assert abs(values.index(row["boundary"]) - values.index(grid_boundary)) <= 1, (row, grid_boundary)

    # the sweep's row holds exactly the searched trials: the analysis commands see the probes
    probed = cells(paretolab.open_store(store), "search").to_pylist()
    assert sum(c["n_seeds"] for c in probed) == searched.total
    assert len(probed) == sum(r["probes"] for r in searched.search.rows())
    again = paretolab.run(tmp_path / "search.yaml", store=store)  # a rerun replays from the store
    assert (again.ran, again.already_done) == (0, searched.total)
    assert again.search.rows() == searched.search.rows()


@pytest.mark.slow  # a CLI process
def test_example_spec_is_a_frontier_search():
    example = Path(__file__).resolve().parents[1] / "examples" / "frontier_search.yaml"
    out = subprocess.run(["paretolab", "run", str(example), "--dry-run"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "frontier search" in out.stdout
    # the grid is an upper bound, not what the search runs
    assert "frontier-search: up to 240 trials (the grid's)" in out.stdout and "the search runs only those it needs" in out.stdout
    assert "to run" not in out.stdout


def test_a_killed_frontier_search_resumes_from_the_store(ray_cluster, driver, count_in, tmp_path):
    (tmp_path / "search.yaml").write_text(PROBLEM.format(name="killed") + SEARCH)
    store = tmp_path / "r"
    address = ray_cluster.get_runtime_context().gcs_address
    child = driver(tmp_path / "search.yaml", store)
    child.wait_until(lambda: count_in(store) >= 8, "8 trials in the store")  # two probes' worth
    child.kill()
    held = count_in(store)

    resumed = paretolab.run(tmp_path / "search.yaml", store=store)
    assert resumed.already_done >= held and resumed.ran == resumed.total - resumed.already_done
    rows, distinct = paretolab.open_store(store).query(
        "SELECT count(*), count(DISTINCT trial_id) FROM trials_all").to_pylist()[0].values()
    assert rows == distinct == resumed.total  # nothing the store held ran again
    assert all(r["status"] == "crossed" for r in resumed.search.rows())
    out = subprocess.run(["paretolab", "run", str(tmp_path / "search.yaml"), "--store", str(store), "--address", address],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "frontier of train_size at p_success >= 0.5 per width" in out.stdout and "(0 run now" in out.stdout

"""The Pareto frontier over cells, against a brute-force reference, on real Parquet through DuckDB."""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paretolab.analysis.frontier import frontier, parse_objectives
from paretolab.store import Store
from paretolab.errors import UsageError

Z = 1.959963984540054
AXES = ["g", "width", "train_size"]
# Fixed examples (derandomize) and no example database: the same run every time. `make_store` only
# returns a function, so sharing it across hypothesis examples is safe.
PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def wilson(s: int, n: int) -> tuple[float, float]:
    """The textbook Wilson score interval (Wilson 1927; Agresti & Coull 1998, eq. 2)."""
    p = s / n
    mid, half = p + Z * Z / (2 * n), Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return (mid - half) / (1 + Z * Z / n), (mid + half) / (1 + Z * Z / n)


def trial_rows(cells: dict[tuple, list[tuple]]) -> tuple[list[dict], list[dict]]:
    """Trials and curves of cells {(g, width, train_size): [(outcome, step, samples), ...]}.

    Outcomes: ok (test_error 0 at `step`), fail (never below 0.5), diverged (NaN at the end),
    failed (status failed, with a curve that would have succeeded: must be ignored)."""
    trials, metrics = [], []
    for (g, width, train_size), seeds in cells.items():
        for seed, (outcome, step, samples) in enumerate(seeds):
            tid = f"{g}-{width}-{train_size}-{seed}"
            status = {"diverged": "diverged", "failed": "failed"}.get(outcome, "finished")
            trials.append({"trial_id": tid, "g": g, "width": width, "train_size": train_size, "seed": seed,
                           "status": status})
            metrics.append({"trial_id": tid, "step": 0, "samples": 0, "test_error": 1.0})
            error = {"ok": 0.0, "failed": 0.0, "fail": 0.5, "diverged": math.nan}[outcome]
            metrics.append({"trial_id": tid, "step": step, "samples": samples, "test_error": error})
    return trials, metrics


def reference_cells(cells: dict[tuple, list[tuple]]) -> dict[tuple, dict]:
    out = {}
    for key, seeds in cells.items():
        kept = [s for s in seeds if s[0] != "failed"]
        if not kept:
            continue
        ok = [s for s in kept if s[0] == "ok"]
        out[key] = {"g": key[0], "width": key[1], "train_size": key[2], "n_seeds": len(kept), "successes": len(ok),
                    "p_success": len(ok) / len(kept),
                    "median_steps_to_success": statistics.median([s[1] for s in ok]) if ok else None,
                    "median_samples_to_success": statistics.median([s[2] for s in ok]) if ok else None}
    return out


def column(objective: str) -> str:
    """The cell column an objective names: a cost (`steps_to_success`) is its median over the seeds."""
    return f"median_{objective}" if objective in ("steps_to_success", "samples_to_success") else objective


def at_least_as_good(b, a, direction) -> bool:
    if a is None:
        return True
    if b is None:
        return False
    return b <= a if direction == "min" else b >= a


def reference_frontier(rows: dict[tuple, dict], objectives, by, min_p) -> set[tuple]:
    """Brute force: every qualifying cell that no qualifying cell of its group dominates."""
    ok = {k: r for k, r in rows.items() if r["p_success"] >= min_p}
    on = set()
    for ka, a in ok.items():
        dominated = False
        for kb, b in ok.items():
            if kb == ka or any(a[g] != b[g] for g in by):
                continue
            ge = all(at_least_as_good(b[column(c)], a[column(c)], d) for c, d in objectives)
            gt = any(not at_least_as_good(a[column(c)], b[column(c)], d) for c, d in objectives)
            dominated |= ge and gt
        if not dominated:
            on.add(ka)
    return on


def order_key(row: dict, objectives, by) -> tuple:
    def last(v, sign=1):
        return (v is None, 0 if v is None else sign * v)
    return (tuple(last(row[g]) for g in by)
            + tuple(last(row[column(c)], 1 if d == "min" else -1) for c, d in objectives)
            + tuple(last(row[a]) for a in AXES if a not in by))


maybe = lambda values: st.sampled_from(values + [None])  # noqa: E731
seed_outcome = st.tuples(st.sampled_from(["ok", "ok", "fail", "diverged", "failed"]),
                         st.sampled_from([10, 20, 30]), st.sampled_from([100, 200, 300]))
cell_map = st.dictionaries(st.tuples(maybe([0, 1]), maybe([1, 2, 3]), maybe([10, 20])),
                           st.lists(seed_outcome, min_size=1, max_size=3), min_size=1, max_size=10)
objective_list = st.lists(
    st.tuples(st.sampled_from(["g", "width", "train_size", "steps_to_success", "median_samples_to_success",
                               "p_success"]),
              st.sampled_from(["min", "max"])),
    min_size=1, max_size=3, unique_by=lambda o: o[0])


@pytest.mark.slow  # many generated cases
@PROPERTY
@given(cells=cell_map, objectives=objective_list, by=st.sampled_from([[], ["g"], ["g", "width"]]),
       min_p=st.sampled_from([0.0, 1 / 3, 0.5, 1.0]))
def test_frontier_matches_brute_force(make_store, cells, objectives, by, min_p):
    trials, metrics = trial_rows(cells)
    with tempfile.TemporaryDirectory() as d:
        store = Store(make_store(Path(d), "s", AXES, trials, metrics))
        got = frontier(store, "s", objectives, by=by or None, min_success_prob=min_p, all_cells=True).to_pylist()
        only = frontier(store, "s", objectives, by=by or None, min_success_prob=min_p).to_pylist()
    expected = reference_cells(cells)
    assert {(r["g"], r["width"], r["train_size"]) for r in got} == set(expected)
    for r in got:
        want = expected[(r["g"], r["width"], r["train_size"])]
        assert {k: r[k] for k in want} == want
        assert (r["p_lo"], r["p_hi"]) == pytest.approx(wilson(want["successes"], want["n_seeds"]), abs=1e-12)
    on = reference_frontier(expected, objectives, by, min_p)
    assert {(r["g"], r["width"], r["train_size"]) for r in got if r["on_frontier"]} == on
    assert only == [r for r in got if r["on_frontier"]]
    assert [order_key(r, objectives, by) for r in got] == sorted(order_key(r, objectives, by) for r in got)


def simple_store(make_store, root: Path, cells: dict[tuple[int, int | None], list], success=("test_error", "<=", 0.1)):
    """Cells {(width, train_size): [step of success or None, ...]}, samples = 10 x step."""
    trials, metrics = [], []
    for (width, train_size), seeds in cells.items():
        for seed, step in enumerate(seeds):
            tid = f"{width}-{train_size}-{seed}"
            trials.append({"trial_id": tid, "width": width, "train_size": train_size, "seed": seed})
            metrics.append({"trial_id": tid, "step": 1, "samples": 10, "test_error": 0.9})
            if step is not None:
                metrics.append({"trial_id": tid, "step": step, "samples": 10 * step, "test_error": 0.0})
    return Store(make_store(root, "s", ["width", "train_size"], trials, metrics, success))


@pytest.mark.parametrize("s, n, lo, hi", [
    (0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (1, 3, 0.0615, 0.7923),
])
def test_wilson_interval(make_store, tmp_path, s, n, lo, hi):
    store = simple_store(make_store, tmp_path, {(8, 10): [5] * s + [None] * (n - s)})
    row = frontier(store, "s", [("p_success", "max")], min_success_prob=0).to_pylist()[0]
    assert (row["n_seeds"], row["successes"], row["p_success"]) == (n, s, s / n)
    assert (row["p_lo"], row["p_hi"]) == pytest.approx((lo, hi), abs=5e-5)  # published 4-digit values
    assert (row["p_lo"], row["p_hi"]) == pytest.approx(wilson(s, n), abs=1e-12)


def test_median_cost_over_successful_seeds_only(make_store, tmp_path):
    trials = [{"trial_id": t, "width": 8, "seed": i, "status": st, "n_params": 7}
              for i, (t, st) in enumerate([("a", "finished"), ("b", "finished"), ("c", "finished"),
                                           ("d", "diverged"), ("e", "failed")])]
    metrics = [
        {"trial_id": "a", "step": 10, "samples": 100, "test_error": 0.05},
        {"trial_id": "b", "step": 10, "samples": 100, "test_error": 0.5},
        {"trial_id": "b", "step": 40, "samples": 400, "test_error": 0.0},
        {"trial_id": "c", "step": 100, "samples": 1000, "test_error": 0.5},  # never succeeds
        {"trial_id": "d", "step": 5, "samples": 50, "test_error": 0.5},
        {"trial_id": "d", "step": 10, "samples": 100, "test_error": math.nan},  # diverged: a failure
        {"trial_id": "e", "step": 1, "samples": 10, "test_error": 0.0},  # failed trial: left out
    ]
    store = Store(make_store(tmp_path, "s", ["width"], trials, metrics))
    row = frontier(store, "s", [("width", "min")], min_success_prob=0).to_pylist()[0]
    assert (row["n_seeds"], row["successes"], row["p_success"]) == (4, 2, 0.5)
    assert (row["median_steps_to_success"], row["median_samples_to_success"]) == (25, 250)
    assert row["median_flops_to_success"] == 6 * 7 * 250
    assert not {"steps_to_success", "samples_to_success", "flops_to_success"} & set(row)  # a cell's cost is a median
    loose = frontier(store, "s", [("width", "min")], min_success_prob=0, success="test_error <= 0.5").to_pylist()[0]
    assert (loose["successes"], loose["median_steps_to_success"]) == (4, 10)  # c at 100; d's 0.5 at step 5
    assert loose["median_steps_to_success"] == statistics.median([10, 10, 100, 5])
    strict = frontier(store, "s", [("width", "min")], min_success_prob=0, success="test_error<0.01").to_pylist()[0]
    assert (strict["successes"], strict["median_steps_to_success"]) == (1, 40)


def test_nan_metric_never_meets_a_criterion(make_store, tmp_path):
    trials = [{"trial_id": "d", "width": 8, "status": "diverged"}]
    metrics = [{"trial_id": "d", "step": 5, "samples": 50, "test_acc": math.nan}]
    store = Store(make_store(tmp_path, "s", ["width"], trials, metrics, ("test_acc", ">=", 0.9)))
    assert frontier(store, "s", [("width", "min")], min_success_prob=0).to_pylist()[0]["successes"] == 0


def test_ties_nulls_threshold_and_order(make_store, tmp_path):
    store = simple_store(make_store, tmp_path, {
        (8, 10): [20, 20],       # tie with (16, 10) on both objectives: both kept
        (16, 10): [20, None, 20],  # p = 2/3
        (32, 10): [30, 30],      # dominated
        (8, None): [10, 10],     # online (NULL train_size) is the worst data, but the cheapest
        (16, None): [10, 10],    # ties (8, None)
        (32, 100): [5, None, None],  # cheapest of all but p = 1/3: does not qualify
        (64, 5): [None, None],   # never succeeds: NULL cost, worst
    })
    rows = frontier(store, "s", all_cells=True, objectives=[("train_size", "min"), ("steps_to_success", "min")])
    got = [(r["width"], r["train_size"], r["on_frontier"]) for r in rows.to_pylist()]
    assert got == [(64, 5, False), (8, 10, True), (16, 10, True), (32, 10, False), (32, 100, False),
                   (8, None, True), (16, None, True)]
    # (64, 5) joins the frontier once nothing needs to succeed: it has the least data.
    everything = frontier(store, "s", [("train_size", "min"), ("steps_to_success", "min")], min_success_prob=0)
    assert [(r["width"], r["train_size"]) for r in everything.to_pylist()] == [(64, 5), (8, 10), (16, 10), (32, 100)]


def test_by_groups_and_single_point_groups(make_store, tmp_path):
    store = simple_store(make_store, tmp_path, {
        (8, 10): [30], (8, 20): [10], (8, 40): [10],
        (16, 10): [5],                # alone in its group: on its frontier
        (32, 10): [None],             # alone, but p = 0 < 0.5: no frontier in that group
    })
    rows = frontier(store, "s", "train_size,steps_to_success", by="width").to_pylist()
    assert [(r["width"], r["train_size"]) for r in rows] == [(8, 10), (8, 20), (16, 10)]
    flat = frontier(store, "s", "train_size,steps_to_success").to_pylist()
    assert [(r["width"], r["train_size"]) for r in flat] == [(16, 10)]
    maxed = frontier(store, "s", "train_size:max,steps_to_success", by=["width"]).to_pylist()
    assert [(r["width"], r["train_size"]) for r in maxed] == [(8, 40), (16, 10)]


def test_parse_objectives():
    # a cost is named as the cells name its statistic, whichever way it is spelled
    assert parse_objectives("train_size,flops_to_success") == [("train_size", "min"),
                                                               ("median_flops_to_success", "min")]
    assert parse_objectives("median_flops_to_success") == [("median_flops_to_success", "min")]
    assert parse_objectives(" train_size : min , p_success:MAX") == [("train_size", "min"), ("p_success", "max")]
    for bad in ["", "a,,b", "a:up", "a:min:max", "1x", "a,a:max", "steps_to_success,median_steps_to_success"]:
        with pytest.raises(UsageError):
            parse_objectives(bad)


def test_usage_errors_name_the_allowed_values(make_store, tmp_path):
    store = simple_store(make_store, tmp_path, {(8, 10): [5]})
    with pytest.raises(UsageError, match="unknown objective 'depth'; allowed: width, train_size, median_steps_to_success"):
        frontier(store, "s", [("depth", "min")])
    with pytest.raises(UsageError, match="direction one of min, max"):
        frontier(store, "s", [("width", "smallest")])
    with pytest.raises(UsageError, match="unknown --by axis 'lr'; axes of the sweep: width, train_size"):
        frontier(store, "s", by=["lr"])
    with pytest.raises(UsageError, match=r"min_success_prob must be in \[0, 1\]"):
        frontier(store, "s", min_success_prob=1.5)
    with pytest.raises(UsageError, match="bad success criterion"):
        frontier(store, "s", success="test_error")


def test_non_numeric_objective_and_clashing_axis(make_store, tmp_path):
    trials = [{"trial_id": "a", "optimizer": "sgd", "n": 10, "successes": 1}]
    metrics = [{"trial_id": "a", "step": 1, "samples": 10, "test_error": 0.0}]
    store = Store(make_store(tmp_path / "a", "s", ["optimizer"], trials, metrics))
    with pytest.raises(UsageError, match=r"objective 'optimizer' is not numeric \(VARCHAR\)"):
        frontier(store, "s", [("optimizer", "min")])
    assert frontier(store, "s", [("p_success", "max")], by="optimizer", min_success_prob=0).num_rows == 1
    # Sparse parity's input dimension `n` is an axis like any other.
    store = Store(make_store(tmp_path / "b", "s", ["n"], trials, metrics))
    row = frontier(store, "s", [("n", "min")]).to_pylist()[0]
    assert (row["n"], row["n_seeds"], row["p_success"], row["on_frontier"]) == (10, 1, 1.0, True)
    store = Store(make_store(tmp_path / "c", "s", ["successes"], trials, metrics))
    with pytest.raises(UsageError, match="axis 'successes' has the name of a cell statistic"):
        frontier(store, "s", [("p_success", "max")])

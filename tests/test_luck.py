"""Best-of-k luck statistics against brute force over every k-subset, on real Parquet through DuckDB."""

from __future__ import annotations

import itertools
import math
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paretolab.analysis.cells import cells
from paretolab.analysis.luck import luck
from paretolab.store import Store
from paretolab.errors import UsageError

# Fixed examples and no example database; `make_store` only returns a function (safe to share).
PROPERTY = settings(max_examples=80, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
N_PARAMS = 7


def write(make_store, root: Path, cells: dict, axes=("width",), n_params=N_PARAMS) -> Store:
    """Cells {width: [(outcome, step, samples), ...]}: ok succeeds at `step`, fail never does,
    diverged ends in NaN, failed (status failed, curve that succeeds) must be ignored."""
    trials, metrics = [], []
    for width, seeds in cells.items():
        for seed, (outcome, step, samples) in enumerate(seeds):
            tid = f"{width}-{seed}"
            status = {"diverged": "diverged", "failed": "failed"}.get(outcome, "finished")
            trials.append({"trial_id": tid, "width": width, "seed": seed, "status": status, "n_params": n_params})
            error = {"ok": 0.0, "failed": 0.0, "fail": 0.5, "diverged": math.nan}[outcome]
            metrics += [{"trial_id": tid, "step": 0, "samples": 0, "test_error": 1.0},
                        {"trial_id": tid, "step": step, "samples": samples, "test_error": error}]
    return Store(make_store(root, "s", list(axes), trials, metrics))


def ks(n: int) -> list[int]:
    return sorted({2 ** j for j in range(n.bit_length()) if 2 ** j <= n} | {n})


def brute(costs: list[float | None], k: int) -> tuple[Fraction, Fraction | None]:
    """(P(any of k succeeds), E[min cost | any succeeds]) over every k-subset; None is a failure."""
    subsets = list(itertools.combinations(costs, k))
    wins = [min(c for c in sub if c is not None) for sub in subsets if any(c is not None for c in sub)]
    return Fraction(len(wins), len(subsets)), (Fraction(sum(wins), len(wins)) if wins else None)


def brute_seeds(p: float, target: float) -> int | None:
    if p == 0:
        return None
    k = 1
    while 1 - (1 - p) ** k < target:
        k += 1
    return k


COST = {"steps_to_success": lambda step, samples: step, "samples_to_success": lambda step, samples: samples,
        "flops_to_success": lambda step, samples: 6 * N_PARAMS * samples}
seed_outcome = st.tuples(st.sampled_from(["ok", "ok", "fail", "diverged", "failed"]),
                         st.sampled_from([10, 20, 30, 40]), st.sampled_from([100, 200, 300]))
cell_map = st.dictionaries(st.sampled_from([1, 2, 3, None]), st.lists(seed_outcome, min_size=1, max_size=7),
                           min_size=1, max_size=3)


@pytest.mark.slow  # many generated cases
@PROPERTY
@given(cells=cell_map, cost=st.sampled_from(sorted(COST)), target=st.sampled_from([0.5, 0.75, 0.9, 0.99]))
def test_luck_matches_brute_force(make_store, cells, cost, target):
    with tempfile.TemporaryDirectory() as d:
        rows = luck(write(make_store, Path(d), cells), "s", cost=cost, target=target).to_pylist()
    expected = []
    for width in sorted(cells, key=lambda w: (w is None, w or 0)):
        kept = [s for s in cells[width] if s[0] != "failed"]
        if not kept:
            continue
        costs = [COST[cost](step, samples) if outcome == "ok" else None for outcome, step, samples in kept]
        s, n = sum(c is not None for c in costs), len(costs)
        for k in ks(n):
            p_any, e = brute(costs, k)
            expected.append({"width": width, "n_seeds": n, "successes": s, "p_success": s / n, "k_seeds": k,
                             "p_any_success": float(p_any), "expected_cost": e and float(e),
                             "expected_total_cost": e and float(k * e), "seeds_for_target": brute_seeds(s / n, target)})
    assert [{c: r[c] for c in ("width", "n_seeds", "successes", "p_success", "k_seeds", "seeds_for_target")}
            for r in rows] == [{c: r[c] for c in ("width", "n_seeds", "successes", "p_success", "k_seeds",
                                                  "seeds_for_target")} for r in expected]
    for r, x in zip(rows, expected):
        for c in ("p_any_success", "expected_cost", "expected_total_cost"):
            assert (r[c] is None) == (x[c] is None)
            assert r[c] is None or r[c] == pytest.approx(x[c], rel=1e-9, abs=1e-12), c


@pytest.mark.parametrize("n, expected", [
    (1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 4]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8]), (9, [1, 2, 4, 8, 9]),
])
def test_k_runs_over_powers_of_two_and_all_seeds(make_store, tmp_path, n, expected):
    rows = luck(write(make_store, tmp_path, {8: [("ok", 10, 100)] * n}), "s").to_pylist()
    assert [r["k_seeds"] for r in rows] == expected
    assert all(r["p_any_success"] == 1 and r["expected_cost"] == pytest.approx(10, rel=1e-12) for r in rows)


@pytest.mark.parametrize("s, n, target, expected", [
    (1, 2, 0.9, 4),     # 1 - 0.5^3 = 0.875 < 0.9 <= 0.9375
    (1, 2, 0.75, 2),    # exactly on the boundary: 1 - 0.5^2 = 0.75
    (3, 3, 0.9, 1), (3, 3, 0.999, 1),
    (0, 3, 0.9, None),
    (1, 10, 0.9, 22),   # ceil(ln 0.1 / ln 0.9) = ceil(21.85)
    (9, 10, 0.99, 2),
    # On the boundary, where ceil(ln(1 - target) / ln(1 - p)) alone rounds to 4.
    (1, 3, 1 - (1 - 1 / 3) ** 3, 3),
])
def test_seeds_for_target(make_store, tmp_path, s, n, target, expected):
    seeds = [("ok", 10, 100)] * s + [("fail", 10, 100)] * (n - s)
    rows = luck(write(make_store, tmp_path, {8: seeds}), "s", target=target).to_pylist()
    assert {r["seeds_for_target"] for r in rows} == {expected}
    assert rows[0]["p_success"] == s / n


def test_hand_computed_cell(make_store, tmp_path):
    # n = 4: successes at 10 and 30, one failure, one diverged; a failed trial is left out.
    seeds = [("ok", 30, 300), ("fail", 5, 50), ("ok", 10, 100), ("diverged", 20, 200), ("failed", 1, 10)]
    rows = luck(write(make_store, tmp_path, {8: seeds}), "s").to_pylist()
    assert [(r["n_seeds"], r["successes"], r["k_seeds"]) for r in rows] == [(4, 2, 1), (4, 2, 2), (4, 2, 4)]
    k1, k2, k4 = rows
    assert (k1["p_any_success"], k1["expected_cost"]) == pytest.approx((0.5, 20))
    # k = 2: 6 pairs, 5 hold a success: 3 hold the 10, 2 the 30 but not the 10; (3 * 10 + 2 * 30) / 5.
    assert (k2["p_any_success"], k2["expected_cost"], k2["expected_total_cost"]) == pytest.approx((5 / 6, 18, 36))
    assert (k4["p_any_success"], k4["expected_cost"], k4["expected_total_cost"]) == pytest.approx((1, 10, 40))


def test_no_success_and_unpriced_success(make_store, tmp_path):
    rows = luck(write(make_store, tmp_path / "a", {8: [("fail", 1, 1)] * 3}), "s").to_pylist()
    assert [(r["p_any_success"], r["expected_cost"], r["expected_total_cost"]) for r in rows] == [(0, None, None)] * 3
    # No parameter count: a success has no FLOPs, so the expectation over FLOPs is unknown.
    store = write(make_store, tmp_path / "b", {8: [("ok", 1, 1), ("fail", 1, 1)]}, n_params=None)
    assert {r["expected_cost"] for r in luck(store, "s", cost="flops_to_success").to_pylist()} == {None}
    assert {r["expected_cost"] for r in luck(store, "s").to_pylist()} == {1}


def test_axes_override_and_usage_errors(make_store, tmp_path):
    store = write(make_store, tmp_path, {1: [("ok", 10, 100)], 2: [("fail", 10, 100)], None: [("ok", 30, 300)]})
    rows = luck(store, "s", axes=[]).to_pylist()
    assert [(r["n_seeds"], r["successes"], r["k_seeds"]) for r in rows] == [(3, 2, 1), (3, 2, 2), (3, 2, 3)]
    assert rows[0]["expected_cost"] == pytest.approx(20)
    assert [r["width"] for r in luck(store, "s").to_pylist()] == [1, 2, None]
    with pytest.raises(UsageError, match="unknown cost 'wall_s'; allowed: steps_to_success, samples_to_success"):
        luck(store, "s", cost="wall_s")
    with pytest.raises(UsageError, match=r"target must be a probability in \(0, 1\)"):
        luck(store, "s", target=1.0)
    with pytest.raises(UsageError, match="unknown axis 'depth'"):
        luck(store, "s", axes=["depth"])


def test_a_cell_statistic_says_whether_it_is_a_median_or_a_mean(make_store, tmp_path):
    # one cell, three successes at 10, 30 and 110: the median cost is 30, the mean 50
    store = write(make_store, tmp_path, {8: [("ok", 10, 100), ("ok", 30, 300), ("ok", 110, 1100)]})
    (cell,) = cells(store, "s").to_pylist()
    assert list(cell) == ["width", "n_seeds", "successes", "median_steps_to_success", "median_samples_to_success",
                          "median_flops_to_success", "p_success", "p_lo", "p_hi"]
    assert (cell["median_steps_to_success"], cell["median_samples_to_success"]) == (30, 300)
    k1 = luck(store, "s").to_pylist()[0]
    assert list(k1) == ["width", "n_seeds", "successes", "p_success", "k_seeds", "p_any_success", "expected_cost",
                        "expected_total_cost", "seeds_for_target"]
    assert (k1["k_seeds"], k1["expected_cost"]) == (1, pytest.approx(50))  # the expectation: a mean

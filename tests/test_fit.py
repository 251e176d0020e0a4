"""Scaling fits on synthetic stores whose steps to success follow a known power law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from paretolab.analysis.fit import fit, predict
from paretolab.store import Store
from paretolab.errors import UsageError

SQUARES = (4, 9, 16, 25, 36, 100)  # x**1.5 is an integer, so 3 * x**1.5 is an exact step count


def trial(tid: str, steps: int | None, **config) -> tuple[dict, list[dict]]:
    """A trial whose test error first reaches 0 at `steps` (None: never, the trial is censored)."""
    metrics = [{"trial_id": tid, "step": 0, "samples": 0, "test_error": 0.0 if steps == 0 else 0.5}]
    if steps:
        metrics.append({"trial_id": tid, "step": steps, "samples": 32 * steps, "test_error": 0.0})
    return {"trial_id": tid, **config}, metrics


def store_of(tmp_path, make_store, specs: list[tuple[dict, list[dict]]], axes=("n",)) -> Store:
    trials = [t for t, _ in specs]
    metrics = [m for _, ms in specs for m in ms]
    return Store(make_store(tmp_path / "r", "scaling", list(axes), trials, metrics))


def test_exact_power_law(tmp_path, make_store):
    specs = [trial(f"n{n}s{s}", 3 * round(n ** 1.5), n=n, seed=s) for n in SQUARES for s in range(2)]
    (row,) = fit(store_of(tmp_path, make_store, specs), "scaling").to_pylist()
    assert row["exponent"] == pytest.approx(1.5, abs=1e-9)
    assert row["prefactor"] == pytest.approx(3, abs=1e-9)
    assert row["exponent_lo"] == pytest.approx(1.5, abs=1e-9) and row["exponent_hi"] == pytest.approx(1.5, abs=1e-9)
    assert row["r2"] == pytest.approx(1, abs=1e-12)
    assert (row["n_points"], row["n_trials"], row["censored_fraction"], row["status"]) == (12, 12, 0.0, "fitted")


def test_noisy_power_law_interval(tmp_path, make_store):
    rng = np.random.default_rng(0)
    xs = [n * n for n in range(2, 21)]
    specs = [trial(f"n{x}s{s}", round(3 * x ** 1.5 * math.exp(0.2 * rng.standard_normal())), n=x, seed=s)
             for x in xs for s in range(4)]
    store = store_of(tmp_path, make_store, specs)
    (row,) = fit(store, "scaling", n_boot=500, seed=1).to_pylist()
    assert row["exponent_lo"] < 1.5 < row["exponent_hi"]
    assert 0 < row["exponent_hi"] - row["exponent_lo"] < 0.2
    assert row["exponent_lo"] < row["exponent"] < row["exponent_hi"] and 0.9 < row["r2"] < 1
    assert fit(store, "scaling", n_boot=500, seed=1).to_pylist() == [row]  # seeded: the same interval again
    assert fit(store, "scaling", n_boot=500, seed=2).to_pylist() != [row]


def test_censored_trials_are_counted_and_left_out(tmp_path, make_store):
    specs = [trial(f"n{n}", 3 * round(n ** 1.5), n=n) for n in SQUARES]
    specs += [trial(f"slow{s}", None, n=100, seed=s) for s in range(1, 4)]  # never succeeded
    specs += [trial("raised", None, n=100, seed=9, status="failed")]  # an error, not an outcome
    specs += [trial("instant", 0, n=100, seed=8)]  # succeeded at step 0: not on a log axis, not censored
    (row,) = fit(store_of(tmp_path, make_store, specs), "scaling").to_pylist()
    assert (row["n_points"], row["n_trials"]) == (6, 10)
    assert row["censored_fraction"] == 3 / 10
    assert "3 of 10 never succeeded" in row["censoring"] and "left out of the fit" in row["censoring"]
    assert row["exponent"] == pytest.approx(1.5, abs=1e-9) and row["prefactor"] == pytest.approx(3, abs=1e-9)


def test_groups_are_fitted_separately(tmp_path, make_store):
    specs = [trial(f"k2n{n}", 3 * round(n ** 1.5), n=n, k=2) for n in SQUARES]
    specs += [trial(f"k3n{n}", 2 * n ** 2, n=n, k=3) for n in SQUARES]
    specs += [trial(f"k4n{n}", 5 * n if n == 16 else None, n=n, k=4) for n in SQUARES]  # one success only
    specs += [trial("k5", 50, n=None, k=5)]  # no x: not on the axis at all
    rows = fit(store_of(tmp_path, make_store, specs, axes=("n", "k")), "scaling", by=["k"]).to_pylist()
    assert [r["k"] for r in rows] == [2, 3, 4]
    assert rows[0]["exponent"] == pytest.approx(1.5, abs=1e-9) and rows[0]["prefactor"] == pytest.approx(3, abs=1e-9)
    assert rows[1]["exponent"] == pytest.approx(2.0, abs=1e-9) and rows[1]["prefactor"] == pytest.approx(2, abs=1e-9)
    k4 = rows[2]
    assert k4["status"] == "need 2 distinct x among succeeded trials, have 1"
    assert k4["exponent"] is None and k4["prefactor"] is None and k4["exponent_lo"] is None
    assert (k4["n_points"], k4["n_trials"], k4["censored_fraction"]) == (1, 6, 5 / 6)


def test_other_costs_and_predict(tmp_path, make_store):
    specs = [trial(f"n{n}", 3 * round(n ** 1.5), n=n) for n in SQUARES]
    (row,) = fit(store_of(tmp_path, make_store, specs), "scaling", y="samples_to_success", n_boot=0).to_pylist()
    assert row["exponent"] == pytest.approx(1.5, abs=1e-9) and row["prefactor"] == pytest.approx(96, abs=1e-9)
    assert row["exponent_lo"] is None and row["exponent_hi"] is None  # no resamples asked for
    assert predict(3.0, 1.5, [4, 9]).tolist() == pytest.approx([24, 81])
    assert predict(2.0, 2.0, 3.0) == pytest.approx(18)


@pytest.mark.parametrize("kwargs, message", [
    ({"y": "wall_s"}, "unknown cost 'wall_s'; known: steps_to_success"),
    ({"x": "nope"}, "unknown axis 'nope'"),
    ({"by": ["bogus"]}, "unknown axis 'bogus'"),
    ({"by": ["n"]}, "cannot also be a --by axis"),
    ({"x": "weight_decay"}, "a log-log fit needs x > 0"),
    ({"x": "task"}, "is not numeric"),
    ({"n_boot": -1}, "n_boot must be >= 0"),
    ({"success": "accuracy>=0.9"}, "unknown metric 'accuracy'"),
])
def test_errors(tmp_path, make_store, kwargs, message):
    specs = [trial(f"n{n}", 3 * round(n ** 1.5), n=n, weight_decay=0.0, task="sparse_parity") for n in SQUARES]
    with pytest.raises(UsageError, match=message):
        fit(store_of(tmp_path, make_store, specs), "scaling", **kwargs)

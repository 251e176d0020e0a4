"""The scaling-law fits validated as a reviewer would: synthetic data from known parameters recovered
within their intervals at about the advertised coverage, a fixed dataset's fit equal to a reference
computed here with another scipy optimizer, the censored fit unbiased where least squares on the
uncensored trials is not, and the compute-optimal allocation checked against a search along the budget."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize, minimize_scalar

from paretolab.analysis.broken import fit_broken
from paretolab.analysis.censored import fit_censored, kaplan_meier
from paretolab.analysis.chinchilla import fit_chinchilla
from paretolab.errors import UsageError

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # Hoffmann et al.'s published fit
SMALL_GRID = {"a": [5.0, 10.0], "b": [5.0, 10.0], "e": [0.0, 1.0], "alpha": [0.5], "beta": [0.5]}


def chinchilla_data(rng, points: int = 120, noise: float = 0.02):
    n = np.exp(rng.uniform(np.log(1e6), np.log(1e9), points))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e11), points))
    loss = (TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]) * np.exp(rng.normal(0, noise, points))
    return n, d, loss


def value(table, name: str) -> dict:
    return next(r for r in table.to_pylist() if r["parameter"] == name)


def test_a_fixed_dataset_fits_as_an_independent_reference_does():
    n, d, loss = chinchilla_data(np.random.default_rng(7))
    fit = fit_chinchilla(n, d, loss, n_boot=0, grid=SMALL_GRID)

    # the reference: the same Huber objective written out in the natural parameters, minimised by
    # Nelder-Mead (another scipy method, no gradient) from a start away from the answer
    def huber(p):
        E, A, B, alpha, beta = np.exp(p[:3]).tolist() + list(p[3:])
        r = np.log(E + A / n ** alpha + B / d ** beta) - np.log(loss)
        return np.where(np.abs(r) <= 1e-3, 0.5 * r * r, 1e-3 * (np.abs(r) - 0.5e-3)).sum()

    ref = minimize(huber, [0.3, 5.0, 5.0, 0.5, 0.5], method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 200_000, "maxfev": 200_000})
    ref = minimize(huber, ref.x, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-16, "maxiter": 200_000})
    E, A, B, alpha, beta = np.exp(ref.x[:3]).tolist() + list(ref.x[3:])
    printed = lambda v: f"{v:.4g}"  # noqa: E731 - as the CLI prints them
    assert [printed(v) for v in (fit.E, fit.A, fit.B, fit.alpha, fit.beta)] == [printed(v) for v in (E, A, B, alpha, beta)]
    assert fit.huber == pytest.approx(ref.fun, rel=1e-6)


@pytest.mark.slow  # 30 fits with bootstrap
def test_known_parameters_are_recovered_at_the_advertised_coverage():
    rng = np.random.default_rng(2024)
    draws, covered = 30, {"alpha": 0, "beta": 0, "E": 0}
    for i in range(draws):
        fit = fit_chinchilla(*chinchilla_data(rng), n_boot=150, seed=i, grid=SMALL_GRID)
        table = fit.parameters()
        for name in covered:
            row = value(table, name)
            covered[name] += row["lo"] <= TRUE[name] <= row["hi"]
    # 95% intervals: 28.5 of 30 expected; 24 or fewer happens with probability < 0.005 if they are right
    assert all(c >= 25 for c in covered.values()), covered
    assert all(c <= draws for c in covered.values())


def test_the_optimal_allocation_is_the_minimum_along_each_budget():
    fit = fit_chinchilla(*chinchilla_data(np.random.default_rng(3)), n_boot=50, grid=SMALL_GRID)
    table = fit.optimal([1e19, 1e21, 1e23]).to_pylist()
    for row in table:
        c = row["flops"]
        assert 6 * row["n_opt"] * row["d_opt"] == pytest.approx(c, rel=1e-9)
        along = minimize_scalar(lambda log_n: fit.predict(np.exp(log_n), c / (6 * np.exp(log_n))),
                                bounds=(np.log(1e3), np.log(1e15)), method="bounded", options={"xatol": 1e-10})
        assert row["n_opt"] == pytest.approx(np.exp(along.x), rel=1e-4)
        assert row["n_lo"] <= row["n_opt"] <= row["n_hi"] and row["d_lo"] <= row["d_opt"] <= row["d_hi"]
    inside = [fit.n.min() <= r["n_opt"] <= fit.n.max() and fit.d.min() <= r["d_opt"] <= fit.d.max() for r in table]
    assert [r["extrapolated"] for r in table] == [not i for i in inside]
    assert table[0]["extrapolated"] is False and table[-1]["extrapolated"] is True  # 1e23 FLOPs: beyond the data
    iso = fit.isoflop(1e21, np.geomspace(1e6, 1e9, 50)).to_pylist()
    best = min(iso, key=lambda r: r["loss"])
    assert best["loss"] >= table[1]["loss_opt"] - 1e-12


def test_a_fit_without_an_optimum_says_so():
    from dataclasses import replace

    fit = fit_chinchilla(*chinchilla_data(np.random.default_rng(4), points=8), n_boot=0, grid=SMALL_GRID)
    assert any("only 8 points" in w for w in fit.warnings)
    with pytest.raises(UsageError, match="no compute-optimal allocation"):
        replace(fit, alpha=-0.1).optimal([1e20])  # the loss would grow with N
    with pytest.raises(UsageError, match="positive numbers of FLOPs"):
        fit.optimal([0])


def censored_data(rng, per_x: int = 400, exponent: float = 1.5, cap: float = 2000.0):
    x = np.repeat([8.0, 16.0, 32.0, 64.0, 128.0], per_x)
    t = 10 * x ** exponent * np.exp(0.8 * rng.standard_normal(len(x)))
    return x, np.minimum(t, cap), t <= cap


def test_the_censored_fit_is_unbiased_where_least_squares_on_the_successes_is_not():
    x, t, event = censored_data(np.random.default_rng(11))
    assert 0.3 < (~event).mean() < 0.7  # heavy censoring at large x
    fit = fit_censored(x, t, event, n_boot=300)
    row = value(fit.parameters(), "exponent")
    assert row["lo"] <= 1.5 <= row["hi"]
    assert fit.ols < row["lo"] - 0.2  # the uncensored trials alone: biased low, far outside the interval


@pytest.mark.slow  # 60 fits with bootstrap
def test_the_censored_interval_covers_at_the_advertised_rate():
    rng = np.random.default_rng(5)
    covered = 0
    for i in range(60):
        row = value(fit_censored(*censored_data(rng, per_x=80), n_boot=200, seed=i).parameters(), "exponent")
        covered += row["lo"] <= 1.5 <= row["hi"]
    assert covered >= 51, covered  # 57 expected; 50 or fewer: probability < 0.001


def test_kaplan_meier_matches_the_product_limit_by_hand():
    # times 1, 2 (censored), 3, 3, 4 (censored): S(1) = 4/5, S(3) = 4/5 * (1 - 2/3) = 4/15
    table = kaplan_meier([1, 2, 3, 3, 4], [True, False, True, True, False]).to_pylist()
    assert [(r["time"], r["at_risk"], r["successes"]) for r in table] == [(1.0, 5, 1), (3.0, 3, 2)]
    assert [r["survival"] for r in table] == pytest.approx([0.8, 4 / 15])
    assert all(r["lo"] <= r["survival"] <= r["hi"] for r in table)


@pytest.mark.slow  # a 1-break fit with bootstrap: seconds
def test_a_broken_power_law_recovers_its_break():
    rng = np.random.default_rng(0)
    x = np.exp(np.linspace(0, 8, 60))
    a, b, c0, c1, d1, f1 = 0.05, 2.0, 0.1, 1.2, 200.0, 0.3
    y = (a + b * x ** -c0 * (1 + (x / d1) ** (1 / f1)) ** (-c1 * f1)) * np.exp(rng.normal(0, 0.02, len(x)))
    fit = fit_broken(x, y, breaks=1, n_boot=100)
    table = fit.parameters()
    for name, truth in (("c0", c0), ("c1", c1), ("d1", d1), ("f1", f1)):
        row = value(table, name)
        assert row["lo"] <= truth <= row["hi"], (name, row)
    assert fit.goodness()["r2_log"] > 0.999 and not fit.warnings
    one = fit_broken(x, x ** -0.5 * np.exp(rng.normal(0, 0.02, len(x))), breaks=1, n_boot=0)
    assert one.goodness()["rmse_log"] < 0.03  # a plain power law is a broken one without a visible break


@pytest.mark.parametrize("call, message", [
    (lambda: fit_chinchilla([1, 2], [1, 2], [1, 2]), "at least 5 points"),
    (lambda: fit_chinchilla([1, 2, 3, 4, -5], [1] * 5, [1] * 5), "n must be positive"),
    (lambda: fit_chinchilla([1] * 5, [1] * 5, [1] * 4), "as long"),
    (lambda: fit_censored([1, 2], [1, 2], [False, False]), "no trial succeeded"),
    (lambda: fit_censored([1, 1], [1, 2], [True, True]), "2 distinct x"),
    (lambda: fit_broken(np.arange(1, 9), np.arange(1, 9), breaks=3), "1 or 2"),
    (lambda: fit_broken(np.arange(1, 5), np.arange(1, 5), breaks=1), "needs at least 6 distinct x"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(UsageError, match=message):
        call()

"""`paretolab fit --form ...` and `paretolab optimal` as a user runs them: over a sweep of the store
(its trials' columns by default) and over a table (`--from`), each output and plot written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from paretolab.analysis.scaling import fit_sweep, fit_table
from paretolab.cli import main
from paretolab.store import Store

TRUE = (1.69, 406.4, 410.7, 0.34, 0.28)


def censored_store(root, make_store, cap: int = 2000):
    """Trials whose test error first reaches 0 at t = 10 n**1.5 e**(0.6 eps), cut at `cap` steps."""
    rng = np.random.default_rng(3)
    trials, metrics = [], []
    for n in (8, 16, 32, 64):
        for s in range(40):
            tid = f"n{n}s{s}"
            t = int(10 * n ** 1.5 * np.exp(0.6 * rng.standard_normal())) + 1
            ran = min(t, cap)
            trials.append({"trial_id": tid, "n": n, "seed": s, "steps": ran, "samples": 32 * ran})
            metrics.append({"trial_id": tid, "step": 0, "samples": 0, "test_error": 0.5})
            if t <= cap:
                metrics.append({"trial_id": tid, "step": t, "samples": 32 * t, "test_error": 0.0})
    return Store(make_store(root, "cens", ["n"], trials, metrics))


def chinchilla_rows(points: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(9)
    n = np.exp(rng.uniform(np.log(1e6), np.log(1e9), points))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e11), points))
    E, A, B, alpha, beta = TRUE
    loss = (E + A / n ** alpha + B / d ** beta) * np.exp(rng.normal(0, 0.01, points))
    return pd.DataFrame({"params_m": n / 1e6, "tokens": d, "loss": loss, "arch": np.where(np.arange(points) % 2, "a", "b")})


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # fits with bootstrap and a plot: over a second
def test_censored_fit_of_a_sweep_from_the_cli(tmp_path, make_store, capsys):
    store = censored_store(tmp_path / "r", make_store)
    code, out, err = run(capsys, "fit", "--store", tmp_path / "r", "--sweep", "cens", "--form", "censored", "--x", "n",
                         "--n-boot", 200, "--format", "json", "--plot", tmp_path / "c.png", "--data", tmp_path / "c.csv")
    assert code == 0, err
    rows = {r["parameter"]: r for r in json.loads(out)}
    assert rows["exponent"]["lo"] <= 1.5 <= rows["exponent"]["hi"]
    python = fit_sweep(store, "cens", "censored", x="n", n_boot=200).parameters().to_pylist()
    assert [r["estimate"] for r in python] == [r["estimate"] for r in json.loads(out)]  # the CLI is the function
    assert (tmp_path / "c.png").stat().st_size > 10_000 and (tmp_path / "c.csv").read_text().startswith("x,")
    # the power form over the same trials leaves the censored out: its exponent is lower
    code, out, _ = run(capsys, "fit", "--store", tmp_path / "r", "--sweep", "cens", "--x", "n", "--format", "json")
    assert code == 0 and json.loads(out)[0]["exponent"] < rows["exponent"]["lo"]
    assert json.loads(out)[0]["censored_fraction"] > 0.2


@pytest.mark.slow  # fits with bootstrap and a plot: over a second
def test_chinchilla_from_a_table_with_expressions_and_groups(tmp_path, capsys):
    frame = chinchilla_rows()
    frame.to_parquet(tmp_path / "runs.parquet")
    code, out, err = run(capsys, "fit", "--from", tmp_path / "runs.parquet", "--form", "chinchilla", "--n", "params_m * 1e6",
                         "--d", "tokens", "--y", "loss", "--starts", 40, "--n-boot", 50, "--format", "csv")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "parameter,estimate,lo,hi,n_boot,meaning"
    alpha = next(float(line.split(",")[1]) for line in lines if line.startswith("alpha,"))
    assert alpha == pytest.approx(TRUE[3], abs=0.05)
    # the same from a frame in Python, and per group
    report = fit_table(frame, "chinchilla", {"n": "params_m * 1e6", "d": "tokens", "y": "loss"}, by=["arch"],
                       n_boot=0, starts=40)
    assert [g["arch"] for g in report.groups] == ["a", "b"]
    assert set(report.parameters().column("arch").to_pylist()) == {"a", "b"}


@pytest.mark.slow  # fits with bootstrap and a plot: over a second
def test_optimal_from_the_cli(tmp_path, capsys):
    chinchilla_rows().to_csv(tmp_path / "runs.csv", index=False)
    code, out, err = run(capsys, "optimal", "--from", tmp_path / "runs.csv", "--n", "params_m * 1e6", "--d", "tokens",
                         "--y", "loss", "--budgets", "1e18,1e24", "--starts", 40, "--n-boot", 50, "--format", "json",
                         "--plot", tmp_path / "o.png")
    assert code == 0, err
    small, huge = json.loads(out)
    assert 6 * small["n_opt"] * small["d_opt"] == pytest.approx(1e18)
    assert small["n_lo"] <= small["n_opt"] <= small["n_hi"]
    assert (small["extrapolated"], huge["extrapolated"]) == (False, True)
    assert (tmp_path / "o.png").stat().st_size > 10_000


@pytest.mark.slow  # a broken power law with bootstrap
def test_broken_power_law_from_a_csv(tmp_path, capsys):
    x = np.exp(np.linspace(0, 8, 40))
    y = 0.05 + 2.0 * x ** -0.1 * (1 + (x / 200) ** (1 / 0.3)) ** (-1.2 * 0.3)
    pd.DataFrame({"x": x, "y": y}).to_csv(tmp_path / "b.csv", index=False)
    code, out, err = run(capsys, "fit", "--from", tmp_path / "b.csv", "--form", "broken", "--x", "x", "--y", "y",
                         "--n-boot", 30, "--format", "json", "--plot", tmp_path / "b.svg")
    assert code == 0, err
    d1 = next(r for r in json.loads(out) if r["parameter"] == "d1")
    assert d1["estimate"] == pytest.approx(200, rel=0.05)
    assert (tmp_path / "b.svg").read_text().startswith("<?xml")


def test_a_points_table_and_warnings(tmp_path, capsys):
    chinchilla_rows(points=8).to_csv(tmp_path / "few.csv", index=False)
    code, out, err = run(capsys, "fit", "--from", tmp_path / "few.csv", "--form", "chinchilla", "--n", "params_m",
                         "--d", "tokens", "--y", "loss", "--starts", 10, "--n-boot", 0, "--points", "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == "n,d,loss,fitted,residual" and len(out.splitlines()) == 9
    assert "warning: only 8 points for 5 parameters" in err


@pytest.mark.parametrize("argv, message", [
    (["--form", "power", "--starts", "5", "--x", "x", "--y", "y"], "--starts goes with --form chinchilla"),
    (["--form", "power", "--x", "nope", "--y", "y"], "cannot read the columns"),
    (["--form", "power", "--x", "x; DROP TABLE t", "--y", "y"], "not"),
    (["--form", "censored", "--x", "x", "--y", "y"], "needs --event"),
])
def test_bad_table_input_is_one_line(tmp_path, capsys, argv, message):
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 4.0]}).to_csv(tmp_path / "t.csv", index=False)
    code, out, err = run(capsys, "fit", "--from", tmp_path / "t.csv", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_predictions_with_bands_and_extrapolation_marked(tmp_path, capsys):
    x = np.array([2.0, 4, 8, 16, 32] * 4)
    y = 3 * x ** 0.5 * np.exp(np.random.default_rng(0).normal(0, 0.05, len(x)))
    pd.DataFrame({"x": x, "y": y}).to_csv(tmp_path / "p.csv", index=False)
    code, out, err = run(capsys, "fit", "--from", tmp_path / "p.csv", "--x", "x", "--y", "y", "--n-boot", 200,
                         "--at", "8,1024", "--format", "json")
    assert code == 0, err
    inside, far = json.loads(out)
    assert inside["predicted"] == pytest.approx(3 * 8 ** 0.5, rel=0.05) and inside["lo"] < inside["predicted"] < inside["hi"]
    assert (inside["extrapolated"], far["extrapolated"]) == (False, True)
    assert far["hi"] - far["lo"] > inside["hi"] - inside["lo"]  # the band widens away from the data
    assert "warning: 1 of 2 predictions lie outside the data" in err
    code, _, err = run(capsys, "fit", "--from", tmp_path / "p.csv", "--x", "x", "--y", "y", "--at", "8", "--points")
    assert code == 2 and "--at and --points" in err

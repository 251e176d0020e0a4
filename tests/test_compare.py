"""Comparisons across sweeps: `--sweep a,b` (or `--sweep a --sweep b`) on every analysis and plot,
grouped by sweep; the LSTM-against-Transformer case is one command."""

from __future__ import annotations

import csv
import io

import pytest

import paretolab
from paretolab.analysis.cells import cells
from paretolab.analysis.fit import fit
from paretolab.analysis.frontier import frontier
from paretolab.cli import main
from paretolab.store import Store, StoreWriter

# sweep -> (model, P(success) at p_ignore 0.8, 0.9): two sweeps of one task, one model each
SWEEPS = {"lstm": ("lstm", (4, 4)), "tf": ("transformer", (3, 0))}


@pytest.fixture
def store(make_store, tmp_path):
    root = tmp_path / "r"
    for sweep, (model, wins) in SWEEPS.items():
        trials, metrics = [], []
        for p, won in zip((0.8, 0.9), wins):
            for seed in range(4):
                tid = f"{sweep}-{p}-{seed}"
                ok = seed < won
                trials.append({"trial_id": tid, "task": "flipflop", "model": model, "p_ignore": p, "seed": seed,
                               "success": ok, "steps": 400, "samples": 6400, "wall_s": 1.0})
                for step in range(0, 401, 100):
                    err = 0.5 - step / 400 * (0.5 if ok else 0.2) * (1 if model == "lstm" else 0.5 + 0.5 * (step == 400))
                    metrics.append({"trial_id": tid, "step": step, "samples": 16 * step, "test_error": err})
        make_store(root, sweep, ["p_ignore"], trials, metrics, ("test_error", "<=", 0.01))
    return root


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cells_of_two_sweeps_are_kept_apart(store):
    rows = cells(paretolab.open_store(store), ["lstm", "tf"]).to_pylist()
    got = {(r["sweep"], r["p_ignore"]): r["successes"] for r in rows}
    assert got == {("lstm", 0.8): 4, ("lstm", 0.9): 4, ("tf", 0.8): 3, ("tf", 0.9): 0}
    assert list(rows[0])[:2] == ["sweep", "p_ignore"]


@pytest.mark.parametrize("how", [("--sweep", "lstm,tf"), ("--sweep", "lstm", "--sweep", "tf")])
def test_the_cli_takes_a_list_or_a_repeated_flag(store, capsys, how):
    code, out, err = run_cli(capsys, "cells", *how, "--store", str(store), "--format", "csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["sweep"], r["p_ignore"], r["successes"]) for r in rows] == [
        ("lstm", "0.8", "4"), ("lstm", "0.9", "4"), ("tf", "0.8", "3"), ("tf", "0.9", "0")]


def test_one_sweep_alone_has_no_sweep_column(store):
    assert "sweep" not in cells(paretolab.open_store(store), "lstm").column_names


def test_frontier_and_fit_are_per_sweep(store):
    st = paretolab.open_store(store)
    front = frontier(st, "lstm,tf", [("p_ignore", "min")]).to_pylist()
    assert [(r["sweep"], r["p_ignore"]) for r in front] == [("lstm", 0.8), ("tf", 0.8)]
    fits = fit(st, "lstm,tf", x="p_ignore", n_boot=0).to_pylist()
    assert [r["sweep"] for r in fits] == ["lstm", "tf"]
    assert [r["n_trials"] for r in fits] == [8, 8]


def test_a_trial_two_sweeps_share_counts_in_each(make_store, tmp_path):
    root = tmp_path / "r"
    shared = {"trial_id": "t1", "width": 16, "seed": 0, "success": True, "steps": 100, "samples": 100}
    metrics = [{"trial_id": "t1", "step": 100, "samples": 100, "test_error": 0.0}]
    make_store(root, "a", ["width"], [shared], metrics)
    writer = StoreWriter(Store(root))  # sweep b submits the same point: the store already holds it
    writer.append("sweeps", [{**paretolab.open_store(root).query("SELECT * FROM sweeps").to_pylist()[0], "sweep": "b"}])
    writer.flush()
    rows = cells(paretolab.open_store(root), "a,b").to_pylist()
    assert [(r["sweep"], r["n_seeds"]) for r in rows] == [("a", 1), ("b", 1)]


def test_different_criteria_need_one_to_compare_by(make_store, tmp_path, capsys):
    root = tmp_path / "r"
    metrics = [{"trial_id": "t1", "step": 100, "samples": 100, "test_error": 0.05}]
    make_store(root, "a", ["width"], [{"trial_id": "t1", "width": 16}], metrics, ("test_error", "<=", 0.1))
    make_store(root, "b", ["width"], [{"trial_id": "t2", "width": 16}], [{**metrics[0], "trial_id": "t2"}],
               ("test_error", "<=", 0.01))
    code, _, err = run_cli(capsys, "cells", "--sweep", "a,b", "--store", str(root))
    assert code == 2 and "different success criteria" in err and "--success" in err and err.count("\n") == 1
    code, out, err = run_cli(capsys, "cells", "--sweep", "a,b", "--store", str(root), "--success",
                             "test_error<=0.1", "--format", "csv")
    assert code == 0, err
    assert [r["successes"] for r in csv.DictReader(io.StringIO(out))] == ["1", "1"]


def test_an_unknown_sweep_in_the_list_is_named(store, capsys):
    code, _, err = run_cli(capsys, "frontier", "--sweep", "lstm,nope", "--store", str(store))
    assert code == 2 and "unknown sweep 'nope'" in err


def test_a_sweep_whose_name_holds_a_comma_is_itself(make_store, tmp_path):
    root = make_store(tmp_path / "r", "a,b", ["width"], [{"trial_id": "t1", "width": 16}],
                      [{"trial_id": "t1", "step": 0, "samples": 0, "test_error": 0.0}])
    assert "sweep" not in cells(paretolab.open_store(root), "a,b").column_names


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["frontier", "phase", "curves", "luck", "fit"])
def test_every_plot_compares(store, capsys, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    extra = ["--x", "p_ignore"] if kind == "fit" else []
    code, _, err = run_cli(capsys, "plot", kind, "--sweep", "lstm,tf", "--store", str(store), "-o", str(out), *extra)
    assert code == 0, err
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("command", [["frontier"], ["luck"], ["fit", "--x", "p_ignore"]])
def test_an_analysis_plot_takes_the_figure_options(store, capsys, tmp_path, command):
    """`--plot` of an analysis draws in the style and size asked for and writes its numbers; its
    stdout stays the table alone."""
    png, data = tmp_path / "f.png", tmp_path / "f.csv"
    code, out, err = run_cli(capsys, *command, "--sweep", "lstm,tf", "--store", str(store), "--format", "csv",
                             "--plot", str(png), "--style", "paper", "--size", "4,3", "--data", str(data))
    assert code == 0, err
    assert list(csv.DictReader(io.StringIO(out)))[0]["sweep"] == "lstm"
    assert png.stat().st_size > 1000 and data.read_text().count("\n") >= 2


def test_figure_options_need_a_plot(store, capsys):
    code, _, err = run_cli(capsys, "luck", "--sweep", "lstm", "--store", str(store), "--data", "x.csv")
    assert code == 2 and err == "error: paretolab luck: --style, --size and --data go with --plot FILE\n"

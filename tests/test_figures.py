"""The figures' content, styles, sizes, labels and data tables, on stores written by hand (no Ray):
a sparse-parity-like grid (width x train_size, online included) whose curves follow a known formula,
so which cell succeeds, and when, is fixed. The same plots on real sweeps: test_analysis_any_sweep.py."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

import paretolab
from paretolab.analysis import figure, plots
from paretolab.analysis.labels import declared_label
from paretolab.cli import main
from paretolab.vocabulary.errors import UsageError

WIDTHS, SIZES, SEEDS = (16, 64), (None, 100, 400), 3


def grid_store(make_store, root: Path, task: bool = True, nan: bool = False) -> Path:
    """width x train_size x 3 seeds. test_error = 0.5 exp(-step / tau), tau longer for narrow nets,
    small training sets and higher seeds; width 16 with 100 samples never gets under 0.1. With
    `nan`, every metric of the seed-2 trials is NaN from step 500 on (a diverged run)."""
    trials, metrics = [], []
    for width in WIDTHS:
        for size in SIZES:
            for seed in range(SEEDS):
                tid = f"w{width}-n{size}-s{seed}"
                tau = 200 * (1 + 0.3 * seed) * (64 / width) ** 0.5 * (1 if size is None else (400 / size) ** 0.5)
                tau = 1e9 if (width, size) == (16, 100) else tau
                trials.append({"trial_id": tid, "width": width, "train_size": size, "seed": seed,
                               "n_params": 30 * width, "steps": 1500, "samples": 1500 * 32,
                               **({"task": "sparse_parity"} if task else {"trainable": "train.py:main"})})
                for step in range(0, 1501, 100):
                    err = 0.5 * math.exp(-step / tau)
                    if nan and seed == 2 and step >= 500:
                        err = math.nan
                    metrics.append({"trial_id": tid, "step": step, "samples": 32 * step, "test_error": err,
                                    "train_error": 0.7 * err, "test_loss": 2 * err})
    return make_store(root, "g", ["width", "train_size"], trials, metrics, ("test_error", "<=", 0.1))


@pytest.fixture
def store(make_store, tmp_path):
    return paretolab.open_store(grid_store(make_store, tmp_path / "r"))


def texts(fig) -> list[str]:
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def close(*figs) -> None:
    for fig in figs:
        figure._plt().close(fig)


@pytest.mark.slow
def test_labels_are_declared_only_for_a_task_sweeps_axes(make_store, tmp_path, store):
    assert declared_label("width") == "width (hidden units)" and declared_label("lr") == "learning rate"
    assert declared_label("train_size") == "training-set size (samples)" and declared_label("p_ignore") is None
    fig = plots.plot_phase(store, "g")
    assert (fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()) == ("training-set size (samples)", "width (hidden units)")
    own = paretolab.open_store(grid_store(make_store, tmp_path / "own", task=False))
    mine = plots.plot_phase(own, "g")  # one's own code: its `width` may mean anything
    assert (mine.axes[0].get_xlabel(), mine.axes[0].get_ylabel()) == ("train_size", "width")
    close(fig, mine)


def test_the_frontier_draws_every_cell_with_its_spread(store, tmp_path):
    fig = plots.plot_frontier(store, "g", y="steps_to_success")
    ax = fig.axes[0]
    table = figure.data(fig).to_pylist()
    assert len(table) == len(WIDTHS) * len(SIZES) and {"steps_to_success_q1", "steps_to_success_q3", "on_frontier"} <= set(table[0])
    stair = [line for line in ax.get_lines() if line.get_label() == "frontier"]
    assert len(stair) == 1 and stair[0].get_drawstyle() == "steps-post"
    front = sorted((r["train_size"] is None, r["train_size"]) for r in table if r["on_frontier"])
    assert len(stair[0].get_xdata()) == len(front)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["100", "400", "online"]  # online in its own column
    assert "//" in texts(fig) and "no success" in texts(fig)  # the breaks: online, and the cell that never succeeded
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["width=16", "width=64", "frontier", "P(success) < 0.5", "no success"]
    spread = [r for r in table if r["successes"] > 1]
    assert all(r["steps_to_success_q1"] <= r["median_steps_to_success"] <= r["steps_to_success_q3"] for r in spread)
    close(fig)


@pytest.mark.slow
def test_facets_give_one_panel_per_value(store):
    frontier = plots.plot_frontier(store, "g", facet="width")
    assert [ax.get_title() for ax in frontier.axes] == ["width=16", "width=64"]
    phase = plots.plot_phase(store, "g", x="train_size", facet="width")  # one axis left: success along it
    assert len(phase.axes) == 2 and "Wilson interval" in phase.get_suptitle()
    assert [ax.get_title() for ax in phase.axes] == ["width=16", "width=64"]
    curves = plots.plot_curves(store, "g", by="train_size", facet="width", x="flops")
    assert len(curves.axes) == 2 and curves.axes[0].get_xlabel() == "training FLOPs"
    luck = plots.plot_luck(store, "g", by="train_size", facet="width")
    assert len(luck.axes) == 4  # cost and chance, per width
    fit = plots.plot_fit(store, "g", x="train_size", facet="width", n_boot=20)
    assert [ax.get_title() for ax in fit.axes] == ["width=16", "width=64"]
    with pytest.raises(UsageError, match="already drawn"):
        plots.plot_frontier(store, "g", x="train_size", facet="train_size")
    close(frontier, phase, curves, luck, fit)


def test_the_phase_diagram_writes_seeds_per_cell(store):
    fig = plots.plot_phase(store, "g")
    assert "0.00\n0/3" in texts(fig) and "1.00\n3/3" in texts(fig)
    lines = plots.plot_phase(store, "g", x="train_size", by="width")
    assert fig.axes[0].get_legend() is None and [t.get_text() for t in lines.axes[0].get_legend().get_texts()] == [
        "width=16", "width=64"]
    with pytest.raises(UsageError, match="not both"):
        plots.plot_phase(store, "g", x="train_size", y="width", by="seed")
    close(fig, lines)


def test_curves_are_bands_over_seeds_aligned_on_steps_samples_or_flops(store):
    fig = plots.plot_curves(store, "g", by="width")
    assert [line.get_label() for line in fig.axes[0].get_lines() if not line.get_label().startswith("_")] == [
        "width=16", "width=64"]
    rows = figure.data(fig).to_pylist()
    assert {r["n_trials"] for r in rows} <= set(range(5, 10))  # 9 trials per width, drawn while >= half report
    assert all(r["test_error_q1"] <= r["test_error_median"] <= r["test_error_q3"] for r in rows)
    by_samples = plots.plot_curves(store, "g", x="samples", by="width")
    assert max(r["samples"] for r in figure.data(by_samples).to_pylist()) == 1500 * 32
    flops = figure.data(plots.plot_curves(store, "g", x="flops", by="width")).to_pylist()
    assert max(r["flops"] for r in flops if r["width"] == 16) == 6 * 30 * 16 * 1500 * 32
    with pytest.raises(UsageError, match="step, samples, flops"):
        plots.plot_curves(store, "g", x="epochs")
    close(fig, by_samples)


def test_luck_draws_chance_and_cost_per_cell(store):
    fig = plots.plot_luck(store, "g")
    cost, chance = fig.axes
    assert chance.get_ylabel() == "P(at least one success)" and cost.get_ylabel().startswith("expected steps")
    assert len(chance.get_lines()) == 6 and len(cost.get_lines()) == 5  # the cell that never succeeds has no cost
    never = [line for line in chance.get_lines() if line.get_label() == "width=16, train_size=100"]
    assert list(never[0].get_ydata()) == [0, 0, 0]
    close(fig)


def test_the_fit_draws_censored_trials_per_panel(store):
    fig = plots.plot_fit(store, "g", x="train_size", by="width", n_boot=20)
    assert [ax.get_title() for ax in fig.axes] == ["width=16", "width=64"]
    narrow = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert narrow[1] == "censored: ran this far (3)"  # the three seeds of (16, 100), at 1500 steps
    (triangles,) = [c for c in fig.axes[0].collections if c.get_label().startswith("censored")]
    assert [tuple(p) for p in triangles.get_offsets()] == [(100, 1500)] * 3
    assert {r["width"] for r in figure.data(fig).to_pylist()} == {16, 64}
    close(fig)


@pytest.mark.slow
def test_styles_sizes_and_the_data_behind_a_figure(store, tmp_path):
    sizes = {}
    for name in ("paper", "screen", "slide"):
        with figure.style(name):
            fig = plots.plot_frontier(store, "g")
            sizes[name] = fig.axes[0].xaxis.label.get_fontsize(), fig.get_size_inches()[0]
            plots.save(fig, tmp_path / f"{name}.svg")
    assert sizes["paper"][0] < sizes["screen"][0] < sizes["slide"][0]
    assert sizes["paper"][1] < sizes["screen"][1] < sizes["slide"][1]
    assert "<text" in (tmp_path / "paper.svg").read_text()  # paper: text stays text
    with figure.style("paper", size=(3.5, 2.5)):
        fig = plots.plot_luck(store, "g")
        assert tuple(fig.get_size_inches()) == (3.5, 2.5)
        plots.save(fig, tmp_path / "luck.pdf", data_path=tmp_path / "luck.csv")
    rows = list(csv.DictReader((tmp_path / "luck.csv").open()))
    assert {"width", "train_size", "k_seeds", "p_any_success", "expected_cost"} <= set(rows[0])
    assert {r["train_size"] for r in rows} == {"", "100", "400"}  # NULL (online) is an empty field
    for bad in ((0, 2), (3,), (math.nan, 2)):
        with pytest.raises(UsageError, match="two numbers of inches"):
            with figure.style("paper", size=bad):
                pass
    with pytest.raises(UsageError, match="unknown style 'poster'; known: screen, paper, slide"):
        with figure.style("poster"):
            pass


@pytest.mark.slow
def test_nan_metrics_and_a_single_cell(make_store, tmp_path):
    nan = paretolab.open_store(grid_store(make_store, tmp_path / "nan", nan=True))
    one = paretolab.open_store(make_store(tmp_path / "one", "one", [], [{"trial_id": "t", "steps": 2}], [
        {"trial_id": "t", "step": s, "samples": 10 * s, "test_error": e} for s, e in ((0, 0.5), (1, math.nan), (2, 0.05))]))
    for st, sweep in ((nan, "g"), (one, "one")):
        for fig in (plots.plot_frontier(st, sweep), plots.plot_phase(st, sweep), plots.plot_curves(st, sweep),
                    plots.plot_luck(st, sweep), plots.plot_fit(st, sweep, n_boot=10)):
            assert not any("nan" in t.lower().split() for t in texts(fig)), texts(fig)
            plots.save(fig, tmp_path / f"{sweep}.png")
    assert figure.data(plots.plot_curves(one, "one")).num_rows == 3


@pytest.mark.slow
def test_the_plot_command_takes_style_size_data_and_facet(store, tmp_path, capsys):
    on = ["--sweep", "g", "--store", str(store.root)]
    out, data = tmp_path / "f.pdf", tmp_path / "f.csv"
    assert main(["plot", "frontier", *on, "--style", "paper", "--size", "3.4,2.4", "--facet", "width",
                 "-o", str(out), "--data", str(data)]) == 0
    assert out.read_bytes().startswith(b"%PDF") and "on_frontier" in data.read_text().splitlines()[0]
    assert main(["plot", "curves", *on, "--x", "samples", "--y", "test_loss", "--by", "width", "-o", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "luck", *on, "--y", "samples_to_success", "--style", "slide", "-o", str(tmp_path / "l.png")]) == 0
    capsys.readouterr()
    for args, message in [(["plot", "luck", *on, "--x", "width"], "--x does not apply"),
                          (["plot", "frontier", *on, "--size", "big"], "bad size 'big'"),
                          (["plot", "frontier", *on, "--data", str(tmp_path / "d.json")], "written as CSV"),
                          (["plot", "phase", *on, "--facet", "depth"], "unknown axis 'depth'"),
                          (["plot", "curves", *on, "--x", "epochs"], "step, samples, flops")]:
        assert main([*args, "-o", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (args, err)

"""Every analysis command on sweeps that are not sparse parity, with the defaults each sweep implies.

Three real sweeps run once, into one store as they would into ./results (so no default may come
from another sweep's columns): a researcher's function with an `lr` axis and `loss`/`test_error`
metrics, flip-flop with `model` as an axis, and a sparse-parity sweep in which nothing succeeds. A
fourth sweep is read while it runs, before any trial has ended. Each command must exit 0 with
output that fits the sweep; the plots are checked as figures (labels, legends, notes) and as files.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

import paretolab
from paretolab.analysis import plots
from paretolab.analysis.frontier import default_objectives
from paretolab.cli import main
from support import wait_for

TRAIN = '''
import time
from pathlib import Path


def main(config, ctx):
    """The loss falls as 1 / (1 + lr * step); the test error is half of it plus seed / 50."""
    for step in range(config["max_steps"] + 1):
        loss = 1.0 / (1.0 + config["lr"] * step)
        if ctx.report(step=step, loss=loss, test_error=0.5 * loss + config["seed"] / 50, hidden_progress=1 - loss):
            break


def held(config, ctx):
    """One evaluation, then wait for the file `go`: the test reads the store while this trial runs."""
    ctx.report(step=0, loss=1.0, test_error=0.5)
    while not Path(config["go"]).exists():
        time.sleep(0.05)
    ctx.report(step=1, loss=0.1, test_error=0.05)
'''

SPECS = {
    # test_error <= 0.105 at lr * step >= 3.76 for seed 0 and >= 4.88 for seed 1: lr 1 succeeds at
    # steps 4 and 5, lr 0.1 only for seed 0 (step 38 of 40), lr 0.01 never.
    "own": """\
sweep: own
trainable: train.py:main
grid: {lr: [0.01, 0.1, 1.0]}
seeds: 2
max_steps: 40
success: {metric: test_error, op: "<=", value: 0.105}
""",
    # 20 steps teach a flip-flop little: a loose criterion, so that some cells succeed and some do not.
    "ff": """\
sweep: ff
task: flipflop
task_args: {length: 12}
grid: {model: [lstm, transformer], p_ignore: [0.5, 0.8]}
model_args: {lstm: {n_layers: 1, hidden: 16}, transformer: {n_layers: 1, d_model: 16, n_heads: 2}}
fixed: {lr: 0.01, batch_size: 16}
seeds: 2
max_steps: 20
eval: {every: 5, test_size: 64}
success: {metric: test_error, op: "<=", value: 0.5}
""",
    # (10, 3)-parity takes hundreds of steps: none of these 20-step trials gets to 1% error.
    "never": """\
sweep: never
task: sparse_parity
task_args: {n: 10, k: 3}
model: mlp
grid: {width: [8, 16], train_size: [null, 100]}
fixed: {lr: 0.1, batch_size: 16}
seeds: 2
max_steps: 20
eval: {every: 5, test_size: 64}
success: {metric: test_error, op: "<=", value: 0.01}
""",
}
NO_SUCCESS = "no trial has succeeded yet"


@pytest.fixture(scope="module")
def store(ray_cluster, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("any_sweep")
    (folder / "train.py").write_text(TRAIN)
    for name, spec in SPECS.items():
        (folder / f"{name}.yaml").write_text(spec)
        summary = paretolab.run(folder / f"{name}.yaml", store=folder / "r")
        assert summary.failed == 0
    return folder / "r"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """`paretolab ARGS` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def as_json(capsys, *args: str) -> list[dict]:
    rc, out, err = cli(capsys, *args, "--format", "json")
    assert rc == 0, err
    return json.loads(out)


def texts(fig) -> list[str]:
    """Every piece of text a figure draws: titles, labels, ticks, legend entries, notes."""
    from matplotlib.text import Text

    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def legend(fig) -> list[str]:
    return fig.axes[0].get_legend_handles_labels()[1]


def commands(sweep: str, store: Path, out: Path, axis: str) -> list[list[str]]:
    """Every analysis command with the sweep's defaults (`axis`: one the sweep has, for --axis/--x)."""
    on = ["--sweep", sweep, "--store", str(store)]
    return [["cells", *on], ["frontier", *on, "--plot", str(out / "frontier-cmd.png")],
            ["luck", *on, "--plot", str(out / "luck-cmd.png")], ["phases", *on, "--trials"],
            ["phases", *on, "--axis", axis], ["fit", *on, "--x", axis, "--n-boot", "50"],
            *[["plot", kind, *on, "-o", str(out / f"{kind}.png")] for kind in ("curves", "phase", "frontier", "luck")],
            ["plot", "fit", *on, "--x", axis, "-o", str(out / "fit.png")],
            ["report", *on, "-o", str(out / "report.html")]]


def option_commands(sweep: str, store: Path, out: Path, axis: str) -> list[list[str]]:
    """Every plot with the options a figure for a paper takes: styles, sizes, the data behind it, facets."""
    on = ["--sweep", sweep, "--store", str(store)]
    paper = ["--style", "paper", "--size", "3.4,2.4"]
    return [["plot", "frontier", *on, *paper, "--data", str(out / "frontier.csv"), "-o", str(out / "frontier.pdf")],
            ["plot", "frontier", *on, "--facet", axis, "-o", str(out / "frontier-facet.png")],
            ["plot", "phase", *on, "--style", "slide", "--facet", axis, "--data", str(out / "phase.csv"),
             "-o", str(out / "phase.png")],
            ["plot", "phase", *on, "--x", axis, "-o", str(out / "phase-x.svg")],
            ["plot", "curves", *on, *paper, "--x", "samples", "--facet", axis, "--data", str(out / "curves.csv"),
             "-o", str(out / "curves.png")],
            ["plot", "luck", *on, "--facet", axis, "--y", "samples_to_success", "--data", str(out / "luck.csv"),
             "-o", str(out / "luck.png")],
            ["plot", "fit", *on, *paper, "--x", axis, "--data", str(out / "fit.csv"), "-o", str(out / "fit.png")]]


def check_png(path: Path) -> None:
    """The file opens as a PNG of a plot's size and is not blank."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300, path
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 5, f"{path} is blank"


def check_report(page: Path, count: int = 5) -> str:
    """The report holds `count` embedded PNGs, each of which opens; returns its text."""
    import base64
    import io
    import re

    from PIL import Image

    text = page.read_text()
    images = re.findall(r'<img class=plot alt="[^"]+" src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == count, text[:2000]
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.format == "PNG" and image.width > 400
    return text


@pytest.mark.parametrize("sweep, axis", [("own", "lr"), ("ff", "p_ignore"), ("never", "width")])
def test_every_command_runs_on_every_sweep(store, tmp_path, capsys, sweep, axis):
    for args in commands(sweep, store, tmp_path, axis):
        rc, _, err = cli(capsys, *args)
        assert rc == 0, (args, err)
    for png in sorted(tmp_path.glob("*.png")):
        check_png(png)
    assert len(list(tmp_path.glob("*.png"))) == 7
    check_report(tmp_path / "report.html")


@pytest.mark.parametrize("sweep, axis", [("own", "lr"), ("ff", "p_ignore"), ("never", "width")])
def test_every_figure_option_runs_on_every_sweep(store, tmp_path, capsys, sweep, axis):
    for args in option_commands(sweep, store, tmp_path, axis):
        rc, _, err = cli(capsys, *args)
        assert rc == 0, (args, err)
    for png in sorted(tmp_path.glob("*.png")):
        check_png(png)
    assert (tmp_path / "frontier.pdf").read_bytes().startswith(b"%PDF")
    for name, column in (("frontier", axis), ("phase", axis), ("luck", axis), ("curves", "samples"), ("fit", "exponent")):
        header = next(csv.reader((tmp_path / f"{name}.csv").open()))
        assert column in header, (name, header)


def test_a_function_sweep_takes_its_axis_metric_and_cost(store, capsys):
    on = ["--sweep", "own", "--store", str(store)]
    cells = {c["lr"]: c for c in as_json(capsys, "cells", *on)}
    assert {lr: c["p_success"] for lr, c in cells.items()} == {0.01: 0, 0.1: 0.5, 1.0: 1}
    assert cells[1.0]["median_steps_to_success"] == 4.5 and cells[1.0]["median_flops_to_success"] is None  # steps only
    # the frontier over the function's own axis and cost: nothing of sparse parity's
    assert default_objectives(paretolab.open_store(store), "own") == [("lr", "min"), ("median_steps_to_success", "min")]
    assert [c["lr"] for c in as_json(capsys, "frontier", *on)] == [0.1, 1.0]
    assert as_json(capsys, "frontier", *on, "--maximize", "p_success")  # the default minimize, less p_success
    luck = as_json(capsys, "luck", *on)
    assert [r["expected_cost"] for r in luck if r["lr"] == 1.0 and r["k_seeds"] == 1] == [4.5]
    (boundary,) = as_json(capsys, "phases", *on, "--axis", "lr")
    assert (boundary["lower_value"], boundary["upper_value"], boundary["status"]) == (0.01, 0.1, "crossed")
    (fit,) = as_json(capsys, "fit", *on, "--x", "lr", "--n-boot", "50")
    assert fit["status"] == "fitted" and fit["exponent"] < 0


def test_transitions_use_the_metrics_the_function_reported(store, capsys):
    on = ["--sweep", "own", "--store", str(store)]
    rc, out, err = cli(capsys, "phases", *on, "--trials", "--format", "json")
    assert rc == 0, err
    rows = {(r["lr"], r["seed"]): r for r in json.loads(out)}
    assert len(rows) == 6
    assert [rows[(1.0, s)]["test_fit_step"] for s in (0, 1)] == [4, 5]  # where test_error <= 0.105 first holds
    assert rows[(0.01, 0)]["test_fit_step"] is None
    # the loss is `loss` (there is no test_loss): the midpoint of its drop from 1 to 0.2 (lr 1, 4 steps)
    # is 0.6, passed at step 1; from 1 to 1 / 4.8 (lr 0.1, 38 steps) it is 0.604, passed at step 7
    assert rows[(1.0, 0)]["onset_step"] == 1 and rows[(0.1, 0)]["onset_step"] == 7
    assert all(r["rise_start_step"] is None and r["train_fit_step"] is None for r in rows.values())
    notes = err.strip().splitlines()
    assert len(notes) == 2 and all(n.startswith("note: ") for n in notes)
    assert "no accuracy metric" in notes[0] and "loss, test_error, hidden_progress" in notes[0]
    assert "no train counterpart of test_error" in notes[1]
    # named metrics override the choice
    rc, out, err = cli(capsys, "phases", *on, "--trials", "--accuracy", "hidden_progress", "--format", "json")
    assert rc == 0 and any(r["rise_end_step"] for r in json.loads(out)) and "accuracy" not in err


def test_names_that_do_not_exist_are_one_line_errors(store, capsys, tmp_path):
    on = ["--sweep", "own", "--store", str(store)]
    png = str(tmp_path / "x.png")
    for args, message in [
        # test_loss and width are columns of the store (the other sweeps have them), not of this sweep
        (("phases", *on, "--trials", "--loss", "test_loss"), "unknown metric 'test_loss'; recorded: loss, test_error, hidden_progress"),
        (("cells", *on, "--success", "test_loss<=0.1"), "unknown metric 'test_loss'; recorded: loss"),
        (("plot", "curves", *on, "--metric", "test_acc", "-o", png), "unknown metric 'test_acc'"),
        (("plot", "phase", *on, "--y", "width", "-o", png), "unknown axis 'width'; axes of the sweep 'own': lr;"),
        (("plot", "luck", *on, "--by", "width", "-o", png), "unknown axis 'width'"),
        (("plot", "frontier", *on, "--by", "model", "-o", png), "unknown axis 'model'"),
        (("plot", "fit", *on, "-o", png), "plot fit needs --x AXIS (numeric axes of the sweep with values > 0: lr)"),
        (("phases", *on), "axes of the sweep: lr"),
    ]:
        rc, out, err = cli(capsys, *args)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert not Path(png).exists()


def test_function_plots(store):
    st = paretolab.open_store(store)
    phase = plots.plot_phase(st, "own")  # one axis: success along it, with its interval
    assert phase.axes[0].get_xlabel() == "lr" and [t.get_text() for t in phase.axes[0].get_xticklabels()] == ["0.01", "0.1", "1"]
    assert "bars: 95% Wilson interval" in phase.axes[0].get_title()
    luck = plots.plot_luck(st, "own")
    assert legend(luck) == ["lr=0.1", "lr=1"]  # one line per cell that succeeded; no `=None`
    assert luck.axes[0].get_yscale() == "log"  # 38 and 4.5 steps: a factor over 8
    frontier = plots.plot_frontier(st, "own")
    assert frontier.axes[0].get_xlabel() == "lr" and frontier.axes[0].get_ylabel() == "median steps to success"
    assert legend(frontier) == ["frontier"]  # one axis: one unlabelled line
    curves = plots.plot_curves(st, "own")
    assert curves.axes[0].get_ylabel() == "test_error" and legend(curves) == ["lr=0.01", "lr=0.1", "lr=1"]
    for fig in (phase, luck, frontier, curves):
        assert not any("hidden units" in t or "None" in t for t in texts(fig))
        plots._plt().close(fig)


def test_flipflop_with_model_as_an_axis(store, capsys):
    st = paretolab.open_store(store)
    on = ["--sweep", "ff", "--store", str(store)]
    cells = as_json(capsys, "cells", *on)
    assert {(c["model"], c["p_ignore"]) for c in cells} == {(m, p) for m in ("lstm", "transformer") for p in (0.5, 0.8)}
    assert 0 < sum(c["successes"] for c in cells) < 8  # some succeed, some do not
    assert default_objectives(st, "ff") == [("p_ignore", "min"), ("median_flops_to_success", "min")]
    rc, out, err = cli(capsys, "phases", *on, "--trials", "--format", "json")
    assert rc == 0 and err == ""  # test_loss, test_acc, train_error, test_error: nothing to note
    assert len(json.loads(out)) == 8
    assert {r["model"] for r in as_json(capsys, "phases", *on, "--axis", "p_ignore")} == {"lstm", "transformer"}

    phase = plots.plot_phase(st, "ff")  # model x p_ignore, not the store's width x train_size columns
    ax = phase.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("model", "p_ignore")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["lstm", "transformer"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0.5", "0.8"]
    frontier = plots.plot_frontier(st, "ff")
    labels = legend(frontier)
    assert labels[-1] == "frontier" and labels[:-1] and set(labels[:-1]) <= {"model=lstm", "model=transformer"}
    for line in frontier.axes[0].get_lines():  # one line per model, each along p_ignore: no zig-zag
        assert list(line.get_xdata()) == sorted(line.get_xdata())
    assert len(frontier.axes[0].get_lines()) == len(labels)
    luck = plots.plot_luck(st, "ff")
    assert legend(luck) and all(label.startswith("model=") and ", p_ignore=" in label for label in legend(luck))
    # explicit choices still override the sweep's
    swapped = plots.plot_phase(st, "ff", x="p_ignore", y="model")
    assert (swapped.axes[0].get_xlabel(), swapped.axes[0].get_ylabel()) == ("p_ignore", "model")
    pooled = plots.plot_luck(st, "ff", by="model")
    assert set(legend(pooled)) <= {"model=lstm", "model=transformer"}
    one_line = plots.plot_frontier(st, "ff", y="steps_to_success", by=())
    assert legend(one_line) == ["frontier"] and one_line.axes[0].get_ylabel() == "median steps to success"
    for fig in (phase, frontier, luck, swapped, pooled, one_line):
        assert not any("hidden units" in t or "None" in t or "online" in t for t in texts(fig))
        plots._plt().close(fig)


def test_a_sweep_without_success_says_so(store, capsys, tmp_path):
    st = paretolab.open_store(store)
    on = ["--sweep", "never", "--store", str(store)]
    assert all(c["successes"] == 0 for c in as_json(capsys, "cells", *on))
    assert as_json(capsys, "frontier", *on) == []
    for fig in (plots.plot_frontier(st, "never"), plots.plot_luck(st, "never"),
                plots.plot_fit(st, "never", x="width", n_boot=10)):
        assert NO_SUCCESS in texts(fig)
        assert fig.axes[0].get_yscale() == "linear"  # nothing positive to put on a log axis
        plots._plt().close(fig)
    phase = plots.plot_phase(st, "never")  # the zeros are data: drawn, with the note under the title
    assert NO_SUCCESS in phase.axes[0].get_title() and (phase.axes[0].get_xlabel(), phase.axes[0].get_ylabel()) == (
        "training-set size (samples)", "width (hidden units)")  # the labels sparse parity and the MLP declare
    assert [t.get_text() for t in phase.axes[0].get_xticklabels()] == ["100", "online"]
    plots._plt().close(phase)
    # the commands that used to fail with a matplotlib traceback, as a user runs them
    for args in (["plot", "frontier", *on, "-o", str(tmp_path / "f.png")], ["plot", "luck", *on, "-o", str(tmp_path / "l.png")],
                 ["report", *on, "-o", str(tmp_path / "r.html")]):
        run = subprocess.run(["paretolab", *args], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0 and "Traceback" not in run.stderr and "error" not in run.stderr, (args, run.stderr)
    check_png(tmp_path / "f.png")
    page = check_report(tmp_path / "r.html")
    assert "No trial has succeeded yet" in page and "No cell is on the frontier" in page


RUNNING = """\
sweep: running
trainable: train.py:held
fixed: {{go: "{go}"}}
grid: {{lr: [0.1, 1.0]}}
seeds: 1
success: {{metric: test_error, op: "<=", value: 0.1}}
"""


def test_a_running_sweep_before_any_trial_ended(driver, tmp_path, capsys):
    (tmp_path / "train.py").write_text(TRAIN)
    spec = tmp_path / "running.yaml"
    spec.write_text(RUNNING.format(go=tmp_path / "go"))
    store = tmp_path / "r"
    run = driver(spec, store)
    # the curves of the held trials are flushed while they wait; no trial row exists yet
    run.wait_until(lambda: (store / "metrics").is_dir() and any((store / "metrics").glob("*.parquet")),
                   "the first curve rows")
    assert not (store / "trials").exists()
    out = tmp_path / "out"
    for args in commands("running", store, out, "lr") + option_commands("running", store, out / "options", "lr"):
        rc, _, err = cli(capsys, *args)
        assert rc == 0, (args, err)
    page = check_report(out / "report.html")
    assert "No trial has ended yet" in page
    st = paretolab.open_store(store)
    for fig in (plots.plot_frontier(st, "running"), plots.plot_phase(st, "running"), plots.plot_luck(st, "running")):
        assert "no trial has ended yet" in texts(fig)
        plots._plt().close(fig)
    curves = plots.plot_curves(st, "running")  # the running trials' curves so far
    assert "running trials: no trial has ended yet" in curves.axes[0].get_title() and legend(curves)
    plots._plt().close(curves)
    (tmp_path / "go").touch()
    assert run.proc.wait(timeout=120) == 0
    assert [c["p_success"] for c in as_json(capsys, "cells", "--sweep", "running", "--store", str(store))] == [1, 1]


@pytest.mark.slow  # every analysis command, plots included
def test_a_sweep_row_alone(make_store, tmp_path, capsys):
    # The first seconds of a run in a new store: its sweep row is written, no curve and no trial yet,
    # so not even the sweep's axes are columns. (The row is written by hand: a real run leaves this
    # state before its workers have started, too soon to catch reliably.)
    store = make_store(tmp_path / "r", "fresh", ["lr", "model"], [], [], ("test_error", "<=", 0.1))
    out = tmp_path / "out"
    for args in commands("fresh", store, out, "lr") + option_commands("fresh", store, out / "options", "lr"):
        rc, _, err = cli(capsys, *args)
        assert rc == 0, (args, err)
    assert "No trial has ended yet" in check_report(out / "report.html")
    assert as_json(capsys, "cells", "--sweep", "fresh", "--store", str(store)) == []
    rc, _, err = cli(capsys, "phases", "--sweep", "fresh", "--store", str(store), "--trials")
    assert rc == 0 and err.strip() == "note: no metric of the sweep is stored yet: every transition column is empty"

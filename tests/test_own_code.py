"""A researcher's own function as the trial (`trainable: train.py:main`), end to end as a user runs
it: a `train.py` and a spec in a folder, `paretolab.run` on the session's real Ray (or the CLI in a
subprocess where a driver is killed), then the store read back through DuckDB.

The functions below are written into each test's folder as `train.py`; what they report is computed
again here (`loss_at`, the same source) so that every stored row is checked against what was sent.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

import paretolab
from paretolab.cli import main
from support import wait_for


def loss_at(lr: float, seed: int, step: int) -> float:
    """The loss the test functions report at `step`: falls with lr * step, offset by the seed."""
    return 1.0 / (1.0 + lr * step) + seed / 1000.0


TRAIN = inspect.getsource(loss_at) + '''
import json
import os
import sys
import time
from pathlib import Path


def main(config, ctx):
    """Report every step until `report` says stop; log what the function was given."""
    ctx.n_params = 100
    ctx.flops_per_sample = 6.0
    seen = {"config": config, "seed": ctx.seed, "trial_id": ctx.trial_id, "attempt": ctx.attempt,
            "device": ctx.device, "workdir": str(ctx.workdir), "workdir_was_there": ctx.workdir.is_dir(),
            "ctx_config": ctx.config, "checkpoint": ctx.load_checkpoint(), "answers": []}
    for step in range(config["max_steps"] + 1):
        loss = loss_at(config["lr"], config["seed"], step)
        stop = ctx.report(step=step, samples=step * config["batch"], loss=loss, acc=1 - loss)
        seen["answers"].append(stop)
        if stop:
            break
    Path(config["out"], ctx.trial_id + ".json").write_text(json.dumps(seen))
    return {"end_acc": 1 - loss, "passes": step + 1}


def misbehaves(config, ctx):
    """Ends as its `mode` says: returns, reports what cannot be recorded, raises, exits..."""
    mode = config["mode"]
    if mode == "returns_only":
        return {"loss": 0.25, "passes": 1}
    if mode == "returns_a_step":
        return {"step": 7, "samples": 56, "loss": 0.75}
    if mode == "reports_another_metric":
        ctx.report(step=0, samples=0, accuracy=0.5)
    if mode in ("reports_another_metric", "reports_nothing"):
        return None
    ctx.report(step=0, samples=0, loss=1.0)
    if mode == "raises":
        raise ValueError("boom at step 1")
    if mode == "nan":
        ctx.report(step=1, samples=8, loss=float("nan"))
    elif mode == "text":
        ctx.report(step=1, samples=8, loss="low")
    elif mode == "backwards":
        ctx.report(step=5, samples=40, loss=0.5)
        ctx.report(step=3, samples=24, loss=0.4)
    elif mode == "named_like_a_parameter":
        ctx.report(step=1, samples=8, loss=0.5, lr=0.1)
    elif mode == "exits":
        sys.exit(3)
    elif mode == "returns_a_list":
        return [1.0]
    elif mode == "returns_a_parameter":
        return {"lr": 0.3}
    elif mode == "case_twins":
        ctx.report(step=1, samples=8, Loss=0.5)
    elif mode == "bad_n_params":
        ctx.n_params = "big"
    elif mode == "library_raises":
        json.loads("{not json")
    elif mode == "two_line_message":
        raise ValueError("first line\\nsecond line")
    else:
        ctx.report(step=1, samples=8, loss=0.5)
    return None


def needs_size(config, ctx):
    """Succeeds where `size` >= 8, whatever the seed."""
    return {"err": 0.0 if config["size"] >= 8 else 1.0}


def main_many(configs, ctxs):
    """`main`, vectorized: the members step together; one told to stop leaves the pack."""
    Path(configs[0]["out"], f"call-{os.getpid()}-{time.monotonic_ns()}.json").write_text(json.dumps(configs))
    for ctx in ctxs:
        ctx.n_params, ctx.flops_per_sample = 100, 6.0
    loss, last, live = {}, {}, set(range(len(configs)))
    for step in range(max(c["max_steps"] for c in configs) + 1):
        for i in sorted(live):
            c = configs[i]
            loss[i], last[i] = loss_at(c["lr"], c["seed"], step), step
            if ctxs[i].report(step=step, samples=step * c["batch"], loss=loss[i], acc=1 - loss[i]):
                live.discard(i)
        if not live:
            break
    return [{"end_acc": 1 - loss[i], "passes": last[i] + 1} for i in range(len(configs))]
'''


def project(folder: Path, spec: str, source: str = TRAIN, name: str = "spec.yaml") -> Path:
    """Write `train.py` and the spec into `folder`; returns the spec's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.py").write_text(source)
    path = folder / name
    path.write_text(textwrap.dedent(spec))
    return path


def rows(store: Path, sql: str, params=None) -> list[dict]:
    return paretolab.open_store(store).query(sql, params).to_pylist()


def ids(store: Path) -> set[str]:
    return {r["trial_id"] for r in rows(store, "SELECT trial_id FROM trials")}


# --------------------------------------------------------------------------------------------------
# one grid of a function: config, context, curves, success, final metrics, analysis


GRID = """\
sweep: own
trainable: train.py:main
fixed: {{out: "{out}", width: 4}}
grid:
  lr: [0.05, 0.5]
zip:
  batch: [8, 16]
  tag: [small, large]
seeds: [3, 7]
max_steps: 12
success: {{metric: loss, op: "<=", value: 0.2}}
"""
FIRST_SUCCESS = 9  # lr 0.5: loss_at at step 8 is 0.2 + seed / 1000, at step 9 0.1818 + seed / 1000


@pytest.fixture(scope="module")
def grid_run(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("grid")
    (folder / "out").mkdir()
    spec = project(folder, GRID.format(out=folder / "out"))
    summary = paretolab.run(spec, store=folder / "r")
    return folder, spec, folder / "r", summary


def test_the_function_gets_its_config_and_context(grid_run):
    folder, _, store, summary = grid_run
    assert (summary.total, summary.ran, summary.failed) == (8, 8, 0)
    trials = rows(store, "SELECT * FROM trials ORDER BY lr, batch, seed")
    assert len(trials) == 8
    points = {(t["lr"], t["batch"], t["tag"], t["seed"]) for t in trials}
    assert points == {(lr, b, tag, s) for lr in (0.05, 0.5) for b, tag in ((8, "small"), (16, "large"))
                      for s in (3, 7)}  # the grid times the zip, per seed
    for t in trials:
        seen = json.loads((folder / "out" / f"{t['trial_id']}.json").read_text())
        config = {"lr": t["lr"], "batch": t["batch"], "tag": t["tag"], "width": 4, "out": str(folder / "out"),
                  "max_steps": 12, "seed": t["seed"]}
        assert seen["config"] == seen["ctx_config"] == config  # nothing else in it
        assert (seen["seed"], seen["trial_id"], seen["attempt"], seen["device"]) == (t["seed"], t["trial_id"], 1, "cpu")
        assert seen["checkpoint"] is None  # load_checkpoint() with no checkpoint
        workdir = Path(tempfile.gettempdir()) / "paretolab-work" / t["trial_id"]
        assert seen["workdir"] == str(workdir) and seen["workdir_was_there"]
        assert not workdir.exists()  # removed once the trial ended
        assert (t["trainable"], t["width"], t["max_steps"], t["attempt"]) == ("train.py:main", 4, 12, 1)


def test_the_metrics_table_holds_what_was_reported(grid_run):
    _, _, store, _ = grid_run
    for t in rows(store, "SELECT trial_id, lr, batch, seed, steps FROM trials"):
        curve = rows(store, "SELECT step, samples, loss, acc, wall_s FROM metrics WHERE trial_id = ? ORDER BY step",
                     [t["trial_id"]])
        expected = [{"step": s, "samples": s * t["batch"], "loss": loss_at(t["lr"], t["seed"], s),
                     "acc": 1 - loss_at(t["lr"], t["seed"], s)} for s in range(t["steps"] + 1)]
        assert [{k: r[k] for k in ("step", "samples", "loss", "acc")} for r in curve] == expected
        walls = [r["wall_s"] for r in curve]
        assert walls == sorted(walls) and walls[0] >= 0


def test_success_stops_the_function_and_is_recorded(grid_run):
    folder, _, store, _ = grid_run
    for t in rows(store, "SELECT * FROM trials"):
        answers = json.loads((folder / "out" / f"{t['trial_id']}.json").read_text())["answers"]
        assert answers == [False] * t["steps"] + [True]  # `report` said stop exactly once, at the end
        if t["lr"] == 0.5:  # success at the first step with loss <= 0.2, and the trial stopped there
            first = next(s for s in range(13) if loss_at(0.5, t["seed"], s) <= 0.2)
            assert first == FIRST_SUCCESS
            assert (t["status"], t["success"], t["steps"], t["steps_to_success"]) == ("finished", True, first, first)
            assert t["stopped_at_success"] is True and t["final_loss"] == loss_at(0.5, t["seed"], first)
            assert t["samples_to_success"] == first * t["batch"]
            assert t["flops_to_success"] == 6.0 * t["samples_to_success"]  # ctx.flops_per_sample x samples
        else:  # never: it ran to max_steps, where `report` said stop
            assert (t["status"], t["success"], t["steps"], t["steps_to_success"]) == ("finished", False, 12, None)
            assert t["samples_to_success"] is None and t["flops_to_success"] is None
            assert t["stopped_at_success"] is False and t["final_loss"] == loss_at(t["lr"], t["seed"], 12)
        assert (t["n_params"], t["flops_per_sample"]) == (100, 6.0)


def test_the_returned_dict_and_the_last_row_are_the_final_metrics(grid_run):
    _, _, store, _ = grid_run
    for t in rows(store, "SELECT * FROM trials"):
        last = loss_at(t["lr"], t["seed"], t["steps"])
        assert (t["final_loss"], t["final_acc"]) == (last, 1 - last)
        assert (t["final_end_acc"], t["final_passes"]) == (1 - last, t["steps"] + 1)
        assert not {"loss", "acc", "end_acc", "passes"} & set(t)  # the curve's names stay the curve's


def test_the_analysis_commands_read_a_function_sweep(grid_run, capsys):
    _, _, store, _ = grid_run
    on = ["--sweep", "own", "--store", str(store), "--format", "json"]
    assert main(["cells", *on]) == 0
    cells = json.loads(capsys.readouterr().out)
    assert {(c["lr"], c["batch"], c["tag"]): (c["n_seeds"], c["p_success"]) for c in cells} == {
        (0.05, 8, "small"): (2, 0), (0.05, 16, "large"): (2, 0), (0.5, 8, "small"): (2, 1), (0.5, 16, "large"): (2, 1)}
    assert {c["median_steps_to_success"] for c in cells if c["lr"] == 0.5} == {FIRST_SUCCESS}
    assert main(["cells", *on, "--success", "loss<=0.5"]) == 0  # recomputed from the reported curves
    again = json.loads(capsys.readouterr().out)
    assert {(c["lr"], c["batch"]): c["median_steps_to_success"] for c in again} == {
        (0.05, 8): None, (0.05, 16): None, (0.5, 8): 3, (0.5, 16): 3}
    assert main(["luck", *on, "--cost", "samples_to_success"]) == 0
    luck = json.loads(capsys.readouterr().out)
    assert {r["expected_cost"] for r in luck if r["lr"] == 0.5 and r["batch"] == 16} == {16 * FIRST_SUCCESS}
    assert main(["phases", *on, "--axis", "lr"]) == 0
    (boundary,) = json.loads(capsys.readouterr().out)[:1]
    assert (boundary["lower_value"], boundary["upper_value"], boundary["status"]) == (0.05, 0.5, "crossed")
    assert main(["frontier", *on, "--minimize", "batch,samples_to_success"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert [(c["lr"], c["batch"]) for c in front] == [(0.5, 8)]


# --------------------------------------------------------------------------------------------------
# what a function returns and how it fails


def line_of(text: str) -> int:
    """The line of TRAIN (as train.py) that holds `text`."""
    (line,) = [i for i, source in enumerate(TRAIN.splitlines(), 1) if text in source]
    return line


def test_every_way_a_function_ends(ray_cluster, tmp_path):
    spec = project(tmp_path, """\
        sweep: failing
        trainable: train.py:misbehaves
        grid:
          mode: [fine, returns_only, returns_a_step, raises, nan, text, backwards, named_like_a_parameter, exits,
                 returns_a_list, returns_a_parameter, case_twins, bad_n_params, two_line_message, library_raises,
                 reports_another_metric, reports_nothing]
        fixed: {lr: 0.1}
        success: {metric: loss, op: "<=", value: 0.5}
        """)
    summary = paretolab.run(spec, store=tmp_path / "r")
    assert (summary.ran, summary.failed, summary.diverged) == (17, 13, 1)
    got = {t["mode"]: t for t in rows(tmp_path / "r", "SELECT * FROM trials")}
    assert "max_steps" not in got["fine"]  # the spec sets none: not in the config, not a column
    assert (got["fine"]["status"], got["fine"]["success"], got["fine"]["steps"]) == ("finished", True, 1)
    # a function that only returns: what it returned is its one row (at step 0 unless it says)
    curves = {mode: rows(tmp_path / "r", "SELECT step, samples, loss, passes FROM metrics WHERE trial_id = ?",
                         [got[mode]["trial_id"]]) for mode in ("returns_only", "returns_a_step")}
    assert curves == {"returns_only": [{"step": 0, "samples": None, "loss": 0.25, "passes": 1.0}],
                      "returns_a_step": [{"step": 7, "samples": 56, "loss": 0.75, "passes": None}]}
    assert [(got[m]["status"], got[m]["steps"], got[m]["curve_rows"], got[m]["success"], got[m]["steps_to_success"])
            for m in ("returns_only", "returns_a_step")] == [("finished", 0, 1, True, 0), ("finished", 7, 1, False, None)]
    assert (got["nan"]["status"], got["nan"]["steps"], got["nan"]["error"]) == ("diverged", 1, None)
    assert {t["lr"] for t in got.values()} == {0.1}  # a returned `lr` overwrote no column
    errors = {mode: t["error"] for mode, t in got.items() if t["status"] == "failed"}
    at = {mode: line_of(text) for mode, text in (("raises", "boom at step 1"), ("text", '"low"'), ("backwards", "step=3,"),
                                                 ("named", "lr=0.1)"), ("twins", "Loss=0.5"), ("two_lines", "first line"),
                                                 ("json", "{not json"))}
    assert errors == {
        "raises": f"ValueError: boom at step 1 (train.py:{at['raises']})",
        "text": "TypeError: ctx.report: metric 'loss' must be a number, got str 'low' "
                f"(train.py:{at['text']})",
        "backwards": "ValueError: ctx.report: step 3 does not increase (the previous report was at step 5); "
                     f"report each step once, in order (train.py:{at['backwards']})",
        "named_like_a_parameter": "ValueError: ctx.report: a metric cannot be named 'lr': a parameter of the trial "
                                  "has that name (column names ignore case); rename the metric "
                                  f"(train.py:{at['named']})",
        "exits": "the function called sys.exit(3); return from it instead",
        "returns_a_list": "the function returned a list; return a dict of final metrics or None",
        "returns_a_parameter": "the returned dict: a metric cannot be named 'lr': a parameter of the trial has "
                               "that name (column names ignore case); rename the metric",
        "case_twins": "ValueError: ctx.report: metric 'Loss' was reported as 'loss' before; column names ignore "
                      f"case: spell it one way (train.py:{at['twins']})",
        "bad_n_params": "ctx.n_params must be an integer in 0..2**63-1 (or None), got str 'big'",
        "two_line_message": f"ValueError: first line second line (train.py:{at['two_lines']})",  # one line
        "library_raises": "json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 "
                          f"column 2 (char 1) (train.py:{at['json']})",  # their line, not json's
        "reports_another_metric": "the success metric 'loss' was never reported (reported: accuracy); report it, or "
                                  "set success.metric to one of those",
        "reports_nothing": "the success metric 'loss' was never reported (reported: none); report it, or set "
                           "success.metric to one of those",
    }
    # a failed attempt's rows are kept: the curve up to the failure
    steps = rows(tmp_path / "r", "SELECT step FROM metrics WHERE trial_id = ? ORDER BY step", [got["backwards"]["trial_id"]])
    assert [r["step"] for r in steps] == [0, 5]
    assert paretolab.run(spec, store=tmp_path / "r").ran == 0  # a failed trial is not rerun by itself


# --------------------------------------------------------------------------------------------------
# identity: the code's files and version are part of every trial's id


IDENTITY = """\
sweep: ident
trainable: train.py:scaled
grid: {{lr: {lrs}}}
fixed: {{out: "{out}"}}
success: {{metric: loss, op: "<=", value: 0.5}}
"""
SCALED = '''\
import os
from pathlib import Path

from helper import SCALE


def scaled(config, ctx):
    Path(config["out"], f"{ctx.trial_id}-{os.getpid()}").touch()
    return {"loss": SCALE * config["lr"]}
'''


def test_ids_follow_the_code_its_helpers_and_version(ray_cluster, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    out, store = tmp_path / "out", tmp_path / "r"
    out.mkdir()
    spec = project(tmp_path, IDENTITY.format(lrs="[0.1, 0.2]", out=out), SCALED)
    (tmp_path / "helper.py").write_text("SCALE = 1.0\n")

    assert main(["run", str(spec), "--store", str(store), "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.startswith(f"ident: 2 trials, 0 already in {store}, 2 to run\n") and "lr=0.1" in dry, dry
    assert not store.exists() and not any(out.iterdir())  # a dry run runs nothing, writes nothing

    first = paretolab.run(spec, store=store, workers=1)
    assert (first.ran, first.already_done) == (2, 0)
    before = ids(store)
    assert {r["final_loss"] for r in rows(store, "SELECT final_loss FROM trials")} == {0.1, 0.2}
    again = paretolab.run(spec, store=store)
    assert (again.ran, again.already_done) == (0, 2)
    assert main(["run", str(spec), "--store", str(store), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"ident: 2 trials, 2 already in {store}, 0 to run\n")
    assert len(list(out.iterdir())) == 2  # the function ran twice in all

    seen = set(before)
    for change, expected_loss in (
            (lambda: (tmp_path / "train.py").write_text(SCALED + "# a comment changes the file\n"), {0.1, 0.2}),
            (lambda: (tmp_path / "helper.py").write_text("SCALE = 10.0\n"), {1.0, 2.0}),
            (lambda: spec.write_text(spec.read_text() + "version: 2\n"), {1.0, 2.0})):
        change()
        summary = paretolab.run(spec, store=store, workers=1)
        now = ids(store) - seen
        assert (summary.ran, summary.already_done, len(now)) == (2, 0, 2)  # every trial again, under new ids
        assert {r["final_loss"] for r in rows(store, "SELECT final_loss FROM trials WHERE list_contains(?, trial_id)",
                                              [list(now)])} \
            == expected_loss  # and the new code ran
        seen |= now
    assert paretolab.run(spec, store=store).ran == 0  # version 2, unchanged: nothing to run

    spec.write_text(spec.read_text().replace("[0.1, 0.2]", "[0.1, 0.2, 0.4]"))
    extended = paretolab.run(spec, store=store, workers=1)
    assert (extended.total, extended.ran, extended.already_done) == (3, 1, 2)
    assert rows(store, "SELECT count(*) AS n, count(DISTINCT trial_id) AS d FROM trials_all") == [{"n": 9, "d": 9}]


def test_an_edit_that_keeps_the_size_and_the_second_is_seen(tmp_path):
    """Python's .pyc cache tells an edited file by its size and whole-second time: the code as
    imported is never cached there, so the edited file is the one that runs."""
    from paretolab.workers.importing import load_function

    train = tmp_path / "train.py"
    train.write_text("def main(config, ctx):\n    return {'loss': 0.1}\n")
    fn, files = load_function("train.py:main", str(tmp_path))
    assert fn(None, None) == {"loss": 0.1} and files == [str(train)]
    stat = train.stat()
    train.write_text("def main(config, ctx):\n    return {'loss': 0.7}\n")
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert load_function("train.py:main", str(tmp_path))[0](None, None) == {"loss": 0.7}
    assert not (tmp_path / "__pycache__").exists()


def test_a_package_hashes_the_same_wherever_it_is_installed(tmp_path, monkeypatch):
    """`trainable: pkg.train:main` from a package outside the spec's folder: its files are hashed under
    their import path, so a machine that installed it elsewhere plans the same ids (an edit, new ones)."""
    from paretolab.orchestrator.grid import expand
    from paretolab.spec import load_spec

    package = tmp_path / "site-a" / "ownpkg_for_tests"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("SCALE = 1.0\n")
    (package / "train.py").write_text("from ownpkg_for_tests.helper import SCALE\n\n\n"
                                      "def main(config, ctx):\n    return {'loss': SCALE * config['lr']}\n")
    spec = project(tmp_path / "project", """\
        sweep: installed
        trainable: ownpkg_for_tests.train:main
        grid: {lr: [0.1, 0.2]}
        success: {metric: loss, op: "<=", value: 0.5}
        """, source="")
    monkeypatch.syspath_prepend(str(tmp_path / "site-a"))
    first = [t.trial_id for t in expand(load_spec(spec))]
    (tmp_path / "site-a").rename(tmp_path / "site-b")
    monkeypatch.syspath_prepend(str(tmp_path / "site-b"))
    assert [t.trial_id for t in expand(load_spec(spec))] == first
    (tmp_path / "site-b" / "ownpkg_for_tests" / "helper.py").write_text("SCALE = 2.0\n")
    assert not {t.trial_id for t in expand(load_spec(spec))} & set(first)


def test_code_that_does_not_import_names_the_line_of_its_own_that_failed(tmp_path):
    from paretolab.workers.importing import load_function

    with pytest.raises(ValueError) as missing:  # no line of the researcher's (nor importlib's frozen frames)
        load_function("not_a_package_anywhere.train:main", str(tmp_path))
    assert str(missing.value) == ("not_a_package_anywhere.train does not import: ModuleNotFoundError: No module "
                                  "named 'not_a_package_anywhere'")
    (tmp_path / "helper.py").write_text("import os\n\nLIMIT = os.environ['NOT_SET_ANYWHERE_X']\n")
    (tmp_path / "train.py").write_text("from helper import LIMIT\n")
    with pytest.raises(ValueError) as raised:
        load_function("train.py:main", str(tmp_path))
    assert str(raised.value) == "train.py does not import: KeyError: 'NOT_SET_ANYWHERE_X' (helper.py:3)"


# --------------------------------------------------------------------------------------------------
# checkpoints: a trial resumes where its checkpoint left it, within a run and across runs


RESUMABLE = '''\
import os
import time
from pathlib import Path


def resumable(config, ctx):
    """A running sum carried in the checkpoint, saved every `every` steps; after the first save the
    first attempt writes its pid and waits for the gate file."""
    state = ctx.load_checkpoint() or {"step": -1, "total": 0.0}
    resumed_from, gate = state["step"], Path(config["gate"])
    for step in range(state["step"] + 1, config["max_steps"] + 1):
        state["total"] += step * config["lr"]
        ctx.report(step=step, samples=4 * step, loss=1 / (1 + state["total"]))
        state["step"] = step
        if step and step % config["every"] == 0:
            ctx.save_checkpoint(state)
            if not gate.exists():
                Path(config["gate"] + ".pid.tmp").write_text(str(os.getpid()))
                os.replace(config["gate"] + ".pid.tmp", config["gate"] + ".pid")
                while not gate.exists():
                    time.sleep(0.05)
    return {"resumed_from": resumed_from}
'''
CHECKPOINTED = """\
sweep: resumed
trainable: train.py:resumable
fixed: {{lr: 0.25, every: 4, gate: "{gate}"}}
max_steps: 12
success: {{metric: loss, op: "<", value: 0}}
"""


def resumable_curve() -> list[dict]:
    """The curve `resumable` reports, however often it is interrupted."""
    total, curve = 0.0, []
    for step in range(13):
        total += step * 0.25
        curve.append({"step": step, "samples": 4 * step, "loss": 1 / (1 + total)})
    return curve


def read_checkpoint(path: Path) -> dict:
    import pickle

    from paretolab.workers.checkpoints import CHECKPOINT_MAGIC

    return pickle.loads(path.read_bytes()[len(CHECKPOINT_MAGIC) + 4:])


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_killed_driver_resumes_the_trial_from_its_checkpoint(ray_cluster, driver, tmp_path):
    gate = tmp_path / "gate"
    spec = project(tmp_path, CHECKPOINTED.format(gate=gate), RESUMABLE)
    store = tmp_path / "r"
    child = driver(spec, store)
    pid = int(child.wait_until(lambda: gate.with_name("gate.pid").exists() and gate.with_name("gate.pid").read_text(),
                               "the first checkpoint"))
    (saved,) = (store / "checkpoints").glob("*/checkpoint.pkl")
    trial_id = saved.parent.name
    child.kill()
    wait_for(lambda: gone(pid), "the worker's end with its driver's", 60)
    held = read_checkpoint(saved)
    assert held["obj"] == {"step": 4, "total": 2.5} and [r[0] for r in held["rows"]] == [0, 1, 2, 3, 4]

    gate.touch()
    resumed = paretolab.run(spec, store=store)
    assert (resumed.ran, resumed.failed) == (1, 0)
    (t,) = rows(store, "SELECT * FROM trials")
    assert (t["trial_id"], t["status"], t["steps"], t["final_resumed_from"]) == (trial_id, "finished", 12, 4)
    curve = rows(store, "SELECT attempt, step, samples, loss, wall_s FROM metrics ORDER BY step")
    assert {r["attempt"] for r in curve} == {t["attempt"]}
    assert [{k: r[k] for k in ("step", "samples", "loss")} for r in curve] == resumable_curve()
    # the rows up to the checkpoint are the first attempt's, carried over (its clock too), then it goes on
    assert [(r["step"], r["wall_s"]) for r in curve[:5]] == [(step, wall) for step, _, wall, _ in held["rows"]]
    assert all(r["wall_s"] >= curve[4]["wall_s"] for r in curve[5:])
    assert not saved.parent.exists()  # dropped once the trial ended

    # the same trial uninterrupted, keeping its checkpoint: the same curve
    kept = tmp_path / "kept.yaml"
    kept.write_text(spec.read_text() + "keep_checkpoints: true\n")
    assert paretolab.run(kept, store=tmp_path / "b").ran == 1
    assert rows(tmp_path / "b", "SELECT trial_id, final_resumed_from FROM trials") == \
        [{"trial_id": trial_id, "final_resumed_from": -1}]
    assert rows(tmp_path / "b", "SELECT step, samples, loss FROM metrics ORDER BY step") == resumable_curve()
    assert read_checkpoint(tmp_path / "b" / "checkpoints" / trial_id / "checkpoint.pkl")["obj"] == {"step": 12, "total": 19.5}


def test_a_killed_worker_resumes_its_trial_within_the_run(ray_cluster, tmp_path):
    gate = tmp_path / "gate"
    spec = project(tmp_path, CHECKPOINTED.format(gate=gate) + "checkpoint_dir: ckpts\n", RESUMABLE)
    killed = []

    def kill_the_worker():
        try:
            pid = int(wait_for(lambda: gate.with_name("gate.pid").exists() and gate.with_name("gate.pid").read_text(),
                               "the first checkpoint", 120))
            assert list((tmp_path / "ckpts").glob("*/checkpoint.pkl"))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            wait_for(lambda: gone(pid), "the worker's end", 60)
        finally:
            gate.touch()  # never leave the run waiting

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    summary = paretolab.run(spec, store=tmp_path / "r", workers=1)
    killer.join()
    assert killed and (summary.ran, summary.failed) == (1, 0)
    (t,) = rows(tmp_path / "r", "SELECT * FROM trials")
    assert (t["status"], t["attempt"], t["steps"], t["final_resumed_from"]) == ("finished", 2, 12, 4)
    assert rows(tmp_path / "r", "SELECT step, samples, loss FROM metrics WHERE attempt = 2 ORDER BY step") == resumable_curve()
    assert not (tmp_path / "ckpts" / t["trial_id"]).exists()


# --------------------------------------------------------------------------------------------------
# searches over a function, and its vectorized variant


def test_an_optuna_search_prunes_a_function_on_what_it_reports(ray_cluster, tmp_path):
    (tmp_path / "out").mkdir()
    spec = project(tmp_path, f"""\
        sweep: searched
        trainable: train.py:main
        fixed: {{out: "{tmp_path / 'out'}", batch: 8}}
        max_steps: 12
        success: {{metric: loss, op: "<=", value: 0.2, stop_on_success: false}}
        search:
          sampler: random
          seed: 1
          n_trials: 12
          pruner: median
          space: {{lr: {{low: 0.01, high: 1.0, log: true}}}}
          objectives: [{{minimize: loss}}]
        """)
    summary = paretolab.run(spec, store=tmp_path / "r", workers=1)
    assert (summary.ran, summary.failed) == (12, 0)
    trials = rows(tmp_path / "r", "SELECT * FROM trials ORDER BY finished_at")
    pruned = [t for t in trials if t["status"] == "pruned"]
    assert pruned and all(t["steps"] < 12 for t in pruned)
    for t in pruned:  # told to stop by `report`, at the step it was pruned
        answers = json.loads((tmp_path / "out" / f"{t['trial_id']}.json").read_text())["answers"]
        assert answers == [False] * t["steps"] + [True]
    assert summary.search.states == {"COMPLETE": 12 - len(pruned), "PRUNED": len(pruned)}
    best = min(t["final_loss"] for t in trials if t["status"] == "finished")
    assert summary.search.best[0]["median_loss"] == best  # one seed: its median is its final loss


def test_a_frontier_search_and_tuning_over_a_function(ray_cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    searched = project(tmp_path, """\
        sweep: bisected
        trainable: train.py:needs_size
        grid: {size: [1, 2, 4, 8, 16, 32, 64]}
        seeds: 2
        success: {metric: err, op: "<=", value: 0.5}
        search: {mode: frontier, axis: size, seeds_per_probe: 2, max_seeds: 2}
        """, name="search.yaml")
    summary = paretolab.run(searched, store=tmp_path / "r", workers=1)
    (row,) = summary.search.rows()
    assert (row["boundary"], row["status"]) == (8, "crossed")
    assert summary.ran == summary.total < 7 * 2  # bisection: not every size was run

    tuned = project(tmp_path, f"""\
        sweep: tuned
        trainable: train.py:main
        grid: {{batch: [8, 16]}}
        fixed: {{out: "{out}"}}
        max_steps: 12
        seeds: 2
        success: {{metric: loss, op: "<=", value: 0.2}}
        tune: {{param: lr, values: [0.05, 0.5], select: min steps_to_success, seeds: 1}}
        """, name="tune.yaml")
    summary = paretolab.run(tuned, store=tmp_path / "r", workers=1)
    assert summary.ran == 2 * 2 + 2  # 2 cells x 2 values x 1 seed, then each cell's second seed
    assert {r["batch"]: r["lr"] for r in summary.search.rows()} == {8: 0.5, 16: 0.5}
    final = paretolab.open_store(tmp_path / "r").query("SELECT batch, lr, seed, steps_to_success FROM trials",
                                                       sweep="tuned").to_pylist()
    first = {seed: next(s for s in range(13) if loss_at(0.5, seed, s) <= 0.2) for seed in (0, 1)}
    assert sorted((r["batch"], r["lr"], r["seed"], r["steps_to_success"]) for r in final) == \
        [(b, 0.5, seed, first[seed]) for b in (8, 16) for seed in (0, 1)]  # every seed at the chosen lr


def test_a_vectorized_function_packs_members_with_the_solo_curves(grid_run):
    folder, spec, solo_store, _ = grid_run
    packed = folder / "packed.yaml"
    packed.write_text(spec.read_text() + "vectorized: train.py:main_many\npack_by: [batch]\n")
    summary = paretolab.run(packed, store=folder / "p", workers=1)
    assert (summary.ran, summary.failed) == (8, 0)
    calls = [json.loads(p.read_text()) for p in (folder / "out").glob("call-*.json")]
    assert [len(c) for c in calls] == [2, 2, 2, 2]  # the grid's consecutive trials of one batch: both seeds
    assert all(len({m["batch"] for m in c}) == 1 for c in calls)  # members share what pack_by names
    assert ids(folder / "p") == ids(solo_store)  # packing is not part of a trial's identity
    columns = "trial_id, status, success, steps, samples, steps_to_success, samples_to_success, flops_to_success, " \
              "n_params, stopped_at_success, final_loss, final_acc, final_end_acc, final_passes"
    assert rows(folder / "p", f"SELECT {columns} FROM trials ORDER BY trial_id") == \
        rows(solo_store, f"SELECT {columns} FROM trials ORDER BY trial_id")
    curve = "SELECT trial_id, step, samples, loss, acc FROM metrics ORDER BY trial_id, step"
    assert rows(folder / "p", curve) == rows(solo_store, curve)


def test_an_error_of_megabytes_is_clipped_where_it_was_raised():
    from paretolab.workers.importing import ERROR_CHARS, exception_line

    try:
        raise ValueError("x" * 10_000_000)
    except ValueError as e:
        line, where = exception_line(e), e.__traceback__.tb_lineno
    assert len(line) < ERROR_CHARS + 100 and "(10,000,012 characters)" in line
    assert line.endswith(f"(test_own_code.py:{where})")


# --------------------------------------------------------------------------------------------------
# the shipped trainable suite (paretolab.testing), on these functions, without Ray


def test_the_function_passes_the_trainable_suite(tmp_path):
    from paretolab.testing import check_trainable
    from paretolab.workers.importing import load_function

    project(tmp_path, "")
    fn, _ = load_function("train.py:main", str(tmp_path))
    config = {"out": str(tmp_path), "lr": 0.5, "batch": 8, "tag": "small", "width": 4, "seed": 3, "max_steps": 12}
    run = check_trainable(fn, config, "loss")
    assert [(r.step, r.samples, r.values["loss"]) for r in run.rows] == [(s, 8 * s, loss_at(0.5, 3, s)) for s in range(13)]
    assert (run.result.status, run.result.n_params, run.resumed_at) == ("finished", 100, None)  # it saves no checkpoint


def test_the_checkpointing_example_resumes_into_its_uninterrupted_curve():
    from paretolab.testing import check_trainable
    from paretolab.workers.importing import load_function

    fn, _ = load_function("checkpointed.py:main", str(Path(__file__).resolve().parents[1] / "examples" / "own_code"))
    config = {"n": 12, "k": 2, "width": 16, "lr": 0.1, "momentum": 0.9, "batch_size": 16, "test_size": 64,
              "eval_every": 10, "checkpoint_every": 20, "seed": 0, "max_steps": 40}
    run = check_trainable(fn, config, "test_error")
    assert [r.step for r in run.rows] == [0, 10, 20, 30, 40]
    assert run.resumed_at == 20  # interrupted after its first checkpoint, resumed from it


def test_a_vectorized_function_passes_the_packing_check(tmp_path):
    from paretolab.testing.trainables import check_vectorized
    from paretolab.workers.importing import load_function

    project(tmp_path, "")
    fn, _ = load_function("train.py:main", str(tmp_path))
    many, _ = load_function("train.py:main_many", str(tmp_path))
    configs = [{"out": str(tmp_path), "lr": lr, "batch": 8, "seed": seed, "max_steps": 6} for lr, seed in ((0.5, 0), (0.05, 1))]
    check_vectorized(fn, many, configs, "loss")


BROKEN = '''\
import time


def ignores_stop(config, ctx):
    for step in range(config["max_steps"] + 3):
        ctx.report(step=step, loss=1.0)


def restarts(config, ctx):
    ctx.load_checkpoint()  # ignored: it starts again from step 0
    for step in range(config["max_steps"] + 1):
        if ctx.report(step=step, loss=1.0 / (1 + step)):
            return
        if step == 2:
            ctx.save_checkpoint({"step": step})


def clocked(config, ctx):
    ctx.report(step=0, loss=time.perf_counter_ns() % 1000)
'''


@pytest.mark.parametrize("name, message", [
    ("ignores_stop", "reported again after ctx.report said stop"),
    ("restarts", "the trial failed: ValueError: ctx.report: step 0 does not increase"),
    ("clocked", "one seed gave two curves"),
])
def test_the_trainable_suite_finds_a_function_that_breaks_the_contract(tmp_path, name, message):
    from paretolab.testing import ConformanceError, check_trainable
    from paretolab.workers.importing import load_function

    project(tmp_path, "", BROKEN)
    fn, _ = load_function(f"train.py:{name}", str(tmp_path))
    with pytest.raises(ConformanceError, match=message):
        check_trainable(fn, {"seed": 0, "max_steps": 4}, "loss")


def test_a_pack_calls_the_vectorized_function_once_for_its_members(tmp_path):
    import dataclasses

    from paretolab.testing.trainables import trial_of
    from paretolab.vocabulary.trial import Assignment, Code, MetricRow, TrialResult
    from paretolab.workers.vectorized import pack_key, run_vectorized

    (tmp_path / "out").mkdir()
    project(tmp_path, "")
    code = Code(kind="function", name="train.py:main", root=str(tmp_path), vectorized="train.py:main_many",
                pack_by=("batch",))
    trials = [dataclasses.replace(trial_of({"out": str(tmp_path / "out"), "lr": 0.5, "batch": 8, "seed": seed,
                                            "max_steps": 6}, "loss", str(tmp_path / "ckpt"), name=f"m{seed}"), code=code)
              for seed in (0, 1)]
    assert pack_key(trials[0]) == pack_key(trials[1]) is not None
    items = [i for i in run_vectorized([Assignment(t, 1) for t in trials], "cpu") if i is not None]
    (call,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("call-*.json")]  # one call for the pack
    assert [c["seed"] for c in call] == [0, 1]
    results = {r.trial_id: r for r in items if isinstance(r, TrialResult)}
    for t in trials:
        curve = [(r.step, r.values["loss"]) for r in items if isinstance(r, MetricRow) and r.trial_id == t.trial_id]
        assert curve == [(s, loss_at(0.5, t.seed, s)) for s in range(7)]
        assert (results[t.trial_id].status, results[t.trial_id].steps) == ("finished", 6)

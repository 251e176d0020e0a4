"""Every example spec answers a dry run, and a shrunken copy of its first trial really trains; the
examples of your own code (examples/own_code/) also pack, resume from their checkpoints and show
hidden progress as they say they do."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

import paretolab
from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec
from paretolab.workers.train import train

pytestmark = pytest.mark.slow  # each test trains a shrunken copy of an example, or starts Ray

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
OWN_CODE = Path(__file__).resolve().parents[1] / "examples" / "own_code"
OWN_SPECS = sorted(OWN_CODE.rglob("*.yaml"))
SHRINK = {  # size argument -> an upper bound small enough for a CPU test, where the trial has it
    "length": 16, "test_length": 24, "train_size": 64, "n_layers": 1, "d_model": 16, "n_heads": 2,
    "hidden": 8, "width": 16, "context": 16,
}


def shrink(args):
    changes = {f.name: min(getattr(args, f.name), SHRINK[f.name]) for f in dataclasses.fields(args)
               if f.name in SHRINK and isinstance(getattr(args, f.name), int)}
    return dataclasses.replace(args, **changes)


def test_there_are_examples():
    assert {"quickstart.yaml", "parity_frontier.yaml"} <= {p.name for p in EXAMPLES} and len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_dry_runs_and_its_first_trial_trains(path, tmp_path, one_thread):
    summary = paretolab.run(path, store=tmp_path / "r", dry_run=True)
    assert summary.total > 0 and summary.first_configs
    first = next(expand(load_spec(path)))
    small = dataclasses.replace(first, task_args=shrink(first.task_args), model_args=shrink(first.model_args),
                                max_steps=3, eval=dataclasses.replace(first.eval, every=1, test_size=8))
    rows = list(train(small, 1))
    assert [r.step for r in rows] == [0, 1, 2, 3]


@pytest.mark.parametrize("kind, expected", [("tasks", {"sparse_parity", "flipflop", "automaton", "sparse_boolean",
                                                       "relu_teacher", "lm"}),
                                            ("models", {"mlp", "transformer", "lstm"})])
def test_cli_lists_plugins_with_their_defaults(kind, expected):
    import json

    out = subprocess.run(["paretolab", kind, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r[kind[:-1]] for r in rows} >= expected
    if kind == "models":
        assert "width=100" in next(r for r in rows if r["model"] == "mlp")["parameters (defaults)"]


# ---------------------------------------------------------------------------------------------
# examples of your own code


SMALL = {"width": 8, "eval_every": 10, "checkpoint_every": 20, "test_size": 64}  # parameter -> a CPU test's size


def shrunk(spec: Path, folder: Path, max_steps: int = 40, sizes: dict = SMALL, **keys) -> Path:
    """A copy of an own-code example in `folder` (its spec's folder, code included) whose spec runs one
    trial (each grid axis at its first value, one seed) for `max_steps` steps at the given `sizes`,
    with checkpoints in `folder`/ckpt; `keys` replace top-level keys of the spec."""
    shutil.copytree(spec.parent, folder, dirs_exist_ok=True)
    raw = yaml.safe_load(spec.read_text())
    raw["fixed"] = {k: sizes.get(k, v) for k, v in raw.get("fixed", {}).items()}
    raw["grid"] = {k: [sizes.get(k, v[0])] for k, v in raw.get("grid", {}).items()}
    raw.update({"max_steps": max_steps, "seeds": 1, "checkpoint_dir": "ckpt", **keys})
    path = folder / spec.name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def trained(trials, pack: bool = False, attempt: int = 1):
    """Train `trials` in this process, one by one (or as one pack): (metric rows, results by trial id)."""
    from paretolab.workers.runners import runner
    from paretolab.vocabulary.trial import Assignment, TrialResult

    assignments = [Assignment(t, attempt) for t in trials]
    run = runner(trials[0])
    items = run.pack(assignments, "cpu", threading.Event()) if pack else \
        [x for a in assignments for x in run.solo(a, "cpu", threading.Event())]
    items = [x for x in items if x is not None]
    return [x for x in items if not isinstance(x, TrialResult)], {x.trial_id: x for x in items if isinstance(x, TrialResult)}


def curve(rows, trial_id: str) -> list[tuple]:
    """(step, samples, metrics) of one trial's rows, wall_s left out."""
    return [(r.step, r.samples, r.values) for r in rows if r.trial_id == trial_id]


def test_there_are_examples_of_own_code():
    assert {str(p.relative_to(OWN_CODE)) for p in OWN_SPECS} >= {"hidden_progress.yaml", "checkpointed.yaml",
                                                                "command/spec.yaml"}


@pytest.mark.parametrize("path", OWN_SPECS, ids=lambda p: str(p.relative_to(OWN_CODE)))
def test_own_code_example_dry_runs_and_its_first_trial_trains(path, tmp_path, one_thread):
    summary = paretolab.run(path, store=tmp_path / "r", dry_run=True)
    assert summary.total > 1 and summary.first_configs
    first = next(expand(load_spec(shrunk(path, tmp_path / "small"))))
    rows, results = trained([first])
    assert [r.step for r in rows] == [0, 10, 20, 30, 40]
    result = results[first.trial_id]
    assert result.status == "finished" and result.error is None, result
    if first.kind == "function":  # a command has no way to state its size
        assert result.n_params and result.flops_per_sample == 6 * result.n_params
    assert {"train_loss", "test_error"} <= set(rows[-1].values)


def test_vectorized_members_report_the_solo_curves(tmp_path, one_thread):
    """main_many trains 6 members (3 learning rates x 2 seeds) at once; each reports what main reports
    alone, up to float rounding (200 steps: near the loss drop rounding differences grow)."""
    spec = shrunk(OWN_CODE / "hidden_progress.yaml", tmp_path, max_steps=200,
                  grid={"width": [16], "lr": [0.03, 0.1, 0.3]}, seeds=2)
    trials = list(expand(load_spec(spec)))
    assert len(trials) == 6 and len({runner_key(t) for t in trials}) == 1  # one pack
    packed_rows, packed_results = trained(trials, pack=True)
    solo_rows, solo_results = trained(trials)
    for t in trials:
        solo, packed = curve(solo_rows, t.trial_id), curve(packed_rows, t.trial_id)
        assert [r[:2] for r in packed] == [r[:2] for r in solo] and len(solo) == 21
        for (_, _, a), (_, _, b) in zip(solo, packed):
            assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], abs=1e-5) for k in a), (a, b)
        assert packed_results[t.trial_id].status == solo_results[t.trial_id].status == "finished"


def runner_key(trial):
    from paretolab.workers.runners import runner

    return runner(trial).pack_key(trial)


HELD = '''\
"""checkpointed.main, held at its first checkpoint while the FIFO {hold} exists (no writer ever opens
it, so reading it blocks); each step the function reports is logged with the process's pid."""
import json
import os
from pathlib import Path

from checkpointed import main as train


def main(config, ctx):
    save, report = ctx.save_checkpoint, ctx.report

    def held_save(obj):
        save(obj)
        if os.path.exists("{hold}"):
            Path("{mark}.tmp").write_text(str(os.getpid()))
            os.replace("{mark}.tmp", "{mark}")
            open("{hold}").read()

    def logged_report(step, **metrics):
        with open("{log}", "a") as f:
            f.write(json.dumps([os.getpid(), step]) + "\\n")
        return report(step, **metrics)

    ctx.save_checkpoint, ctx.report = held_save, logged_report
    return train(config, ctx)
'''


def test_checkpointed_example_killed_mid_trial_resumes_where_it_stopped(ray_cluster, driver, tmp_path):
    """The driver is SIGKILLed while the trial's worker is held just after its first checkpoint (step
    20 of 60); the rerun loads it and reports from step 30 on, and the curve in the store is an
    uninterrupted run's, row for row (wall_s aside)."""
    import json

    from support import wait_for

    hold, mark, log = tmp_path / "hold", tmp_path / "held.pid", tmp_path / "reports.log"
    spec = shrunk(OWN_CODE / "checkpointed.yaml", tmp_path / "code", max_steps=60, trainable="held.py:main",
                  success={"metric": "test_error", "op": "<", "value": -1})  # never met: all 60 steps
    (spec.parent / "held.py").write_text(HELD.format(hold=hold, mark=mark, log=log))
    os.mkfifo(hold)
    store = tmp_path / "r"
    child = driver(spec, store)
    pid = int(child.wait_until(lambda: mark.exists() and mark.read_text(), "the first checkpoint"))
    (saved,) = (spec.parent / "ckpt").glob("*/checkpoint.pkl")
    child.kill()  # SIGKILL, the driver's whole process group
    wait_for(lambda: gone(pid), "the held worker's end with its driver's", 60)
    hold.unlink()

    summary = paretolab.run(spec, store=store)
    assert (summary.ran, summary.failed) == (1, 0)
    reported = [json.loads(line) for line in log.read_text().splitlines()]
    first = [s for p, s in reported if p == pid]
    again = [s for p, s in reported if p != pid]
    assert first == [0, 10, 20] and again == [30, 40, 50, 60]  # the rerun went on from step 20
    assert not saved.parent.exists()  # dropped once the trial ended

    whole = paretolab.run(spec, store=tmp_path / "whole")  # the same trial, uninterrupted
    assert whole.ran == 1

    def curve_in(where):
        got = paretolab.open_store(where).query("SELECT * EXCLUDE (wall_s, attempt) FROM metrics ORDER BY step")
        return got.to_pylist()

    resumed = curve_in(store)
    assert [r["step"] for r in resumed] == [0, 10, 20, 30, 40, 50, 60]
    assert resumed == curve_in(tmp_path / "whole")


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_hidden_progress_shows_in_the_weights_before_the_loss_drops(ray_cluster, tmp_path, capsys):
    """Barak et al. 2022's hidden progress, read by the phase analysis as docs/own_code.md shows it
    (`paretolab phases --trials --accuracy support_share`): on each curve support_share starts its
    rise (10% of the way to its maximum) at an earlier step than the test loss reaches the midpoint
    of its drop. Width 64, lr 0.1, 3 seeds: about 2000 steps each, one pack."""
    import json

    from paretolab.cli import main

    spec = shrunk(OWN_CODE / "hidden_progress.yaml", tmp_path, max_steps=3000, sizes={},
                  grid={"width": [64], "lr": [0.1]}, seeds=3)
    summary = paretolab.run(spec, store=tmp_path / "r")
    assert (summary.ran, summary.succeeded) == (3, 3)
    capsys.readouterr()
    assert main(["phases", "--store", str(tmp_path / "r"), "--sweep", "hidden-progress", "--trials",
                 "--accuracy", "support_share", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert len(found) == 3
    for t in found:
        assert t["rise_start_step"] < t["onset_step"] <= t["test_fit_step"], t


HELD_COMMAND = '''\
"""train.py, held once at its first checkpoint while the FIFO {hold} exists (reading it blocks until
the test opens it to write); {mark} says when."""
import os
import runpy
import sys
from pathlib import Path

replace = os.replace


def held_replace(src, dst):
    replace(src, dst)
    if str(dst).endswith("checkpoint.pt") and os.path.exists("{hold}"):
        Path("{mark}").touch()
        open("{hold}").read()
        os.unlink("{hold}")


os.replace = held_replace
train = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py")
sys.argv[0] = train
runpy.run_path(train, run_name="__main__")
'''


def test_command_example_stopped_then_run_again_resumes_from_its_checkpoint(tmp_path):
    """The command example is held just after its checkpoint at step 20 and the worker is interrupted
    (as Ctrl-C does): the script sees the stop file at its next report (step 30), saves and exits,
    and the trial has not ended. Attempt 2 loads that checkpoint and reports from step 40 on; rows
    0-30 are the first attempt's, carried over (wall_s too), and the curve is an uninterrupted run's."""
    from paretolab.workers.process import STOP_FILE
    from paretolab.workers.runners import runner
    from paretolab.vocabulary.trial import Assignment, MetricRow, TrialResult
    from paretolab.workers.user_code import workdir

    hold, mark = tmp_path / "hold", tmp_path / "held"
    whole = shrunk(OWN_CODE / "command" / "spec.yaml", tmp_path / "whole", max_steps=60)
    spec = shrunk(OWN_CODE / "command" / "spec.yaml", tmp_path / "code", max_steps=60)
    (spec.parent / "held.py").write_text(HELD_COMMAND.format(hold=hold, mark=mark))
    raw = yaml.safe_load(spec.read_text())
    raw["command"][1] = "held.py"
    spec.write_text(yaml.safe_dump(raw, sort_keys=False))
    trial = next(expand(load_spec(spec)))
    os.mkfifo(hold)

    interrupted, first, ended = threading.Event(), [], []
    for item in runner(trial).solo(Assignment(trial, 1), "cpu", interrupted):  # None about every 0.5 s
        first += [item] if isinstance(item, MetricRow) else []
        ended += [item] if isinstance(item, TrialResult) else []
        if mark.exists() and not interrupted.is_set():
            interrupted.set()  # the runner answers with the stop file
        if interrupted.is_set() and hold.exists() and (workdir(trial.trial_id) / STOP_FILE).exists():
            with open(hold, "w"):  # the held script reads an end of file, and goes on to step 30
                pass
    assert [r.step for r in first] == [0, 10, 20, 30] and not ended  # interrupted: the trial has not ended
    assert sorted(p.name for p in (spec.parent / "ckpt").glob("*/*")) == ["checkpoint.pt", "curve.jsonl"]

    rows, results = trained([trial], attempt=2)
    assert results[trial.trial_id].status == "finished"
    assert [(r.step, r.wall_s) for r in rows[:4]] == [(r.step, r.wall_s) for r in first]  # carried over
    reference, _ = trained(list(expand(load_spec(whole))))
    assert curve(rows, trial.trial_id) == curve(reference, reference[0].trial_id)
    assert [r.step for r in rows] == [0, 10, 20, 30, 40, 50, 60]

"""Your own function as the CLI runs it: Ctrl-C asks a running function to stop, it saves a
checkpoint, and the rerun goes on from it; a sweep of a function into an object-store store (S3),
its checkpoints there too. Each run is the real CLI in a subprocess, its own Ray in a private
RAY_TMPDIR."""

from __future__ import annotations

import signal
import subprocess

import pyarrow.fs as pafs

import paretolab
from support import wait_for

TRAIN = """\
import pathlib


def main(config, ctx):
    state = ctx.load_checkpoint() or {"step": 0}
    step = state["step"]
    here = pathlib.Path(config["folder"])
    while step < 30:
        step += 1
        if ctx.report(step=step, samples=4 * step, loss=1.0 / step):
            ctx.save_checkpoint({"step": step})
            (here / "stopped").write_text(str(step))
            return None
        if step == 5 and ctx.attempt == 1 and config["hold"]:
            (here / "ready").write_text("")
            while not ctx.should_stop():  # holds here until the run is interrupted
                pass
        if step % 10 == 0:
            ctx.save_checkpoint({"step": step})
    return {"last": step}
"""

SPEC = """\
sweep: held
trainable: train.py:main
fixed: {{folder: "{folder}", hold: {hold}}}
success: {{metric: loss, op: "<", value: 0.0}}
"""


def write(tmp_path):
    (tmp_path / "train.py").write_text(TRAIN)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(folder=tmp_path, hold="true"))
    return spec


def test_ctrl_c_lets_a_function_save_a_checkpoint_and_the_rerun_goes_on_from_it(ray_dirs, tmp_path):
    ray_dir = ray_dirs()
    spec, store = write(tmp_path), tmp_path / "r"
    args = ["paretolab", "run", str(spec), "--store", str(store)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_dir.env())
    wait_for(lambda: (tmp_path / "ready").exists(), "the function waiting at step 5", proc=proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopping: 1 trial of your code asked to stop" in out
    assert (tmp_path / "stopped").read_text() == "6"  # told to stop at its next report, it saved and returned
    st = paretolab.open_store(store)
    (tid,) = [p.name for p in (store / "checkpoints").iterdir()]
    assert st.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == 0  # it has not ended
    steps = st.query("SELECT step FROM metrics ORDER BY step").column("step").to_pylist()
    assert steps == list(range(1, 7))  # its rows up to the interrupt were kept

    rerun = subprocess.run(args, capture_output=True, text=True, env=ray_dir.env(), timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    trial = st.query("SELECT trial_id, attempt, status, steps, final_last, curve_rows FROM trials").to_pylist()
    assert trial == [{"trial_id": tid, "attempt": 2, "status": "finished", "steps": 30, "final_last": 30,
                      "curve_rows": 30}]
    curve = st.query("SELECT step, samples FROM metrics WHERE attempt = 2 ORDER BY step").to_pylist()
    assert curve == [{"step": s, "samples": 4 * s} for s in range(1, 31)]  # steps 1-6 carried, 7-30 trained
    assert not (store / "checkpoints" / tid).exists()  # dropped once the trial's row was written


def test_a_function_sweep_into_an_object_store(ray_dirs, tmp_path, s3_store):
    ray_dir = ray_dirs()
    (tmp_path / "train.py").write_text(TRAIN)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(folder=tmp_path, hold="false").replace("fixed: {", "grid: {width: [1, 2]}\nfixed: {")
                    + "keep_checkpoints: true\n")
    run = subprocess.run(["paretolab", "run", str(spec), "--store", s3_store], capture_output=True, text=True,
                         env=ray_dir.env(), timeout=300)
    assert run.returncode == 0, run.stderr
    st = paretolab.open_store(s3_store)
    rows = st.query("SELECT status, steps, curve_rows FROM trials ORDER BY width").to_pylist()
    assert rows == [{"status": "finished", "steps": 30, "curve_rows": 30}] * 2
    fs, path = pafs.FileSystem.from_uri(f"{s3_store}/checkpoints")
    kept = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    assert sum(i.path.endswith("/checkpoint.pkl") for i in kept) == 2  # keep_checkpoints: on the store, kept

"""Ctrl-C at any instant of `paretolab run` ends it with status 130 and the command that resumes,
and the same command then completes the sweep: before Ray starts, inside Ray's start, once Ray is
up, after the first trial ended, while Ray shuts down.

Inside `ray.init()` a KeyboardInterrupt left a half-started driver: the run exited 130 without the
resume line, or died of a segfault at exit (139), and a Ctrl-C lost in Ray let the sweep run to its
end (exit 0). Each interrupted run is the real CLI in a subprocess, its own Ray in a private
RAY_TMPDIR; the Ctrl-C comes from tests/ctrl_c_at.py at the named call, not after a delay. The rerun
is the same command through the CLI's `main` in this process, on the suite's Ray (what it checks is
the store the interrupted run left; tests/test_cli.py reruns a Ctrl-C'd sweep in a subprocess).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import paretolab
from ctrl_c_at import POINTS
from paretolab.cli import main

TRIALS, MAX_STEPS, EVERY = 4, 300, 50
ROWS_PER_TRIAL = MAX_STEPS // EVERY + 1  # the criterion is never met: every trial runs all its steps


def paretolab_run(ray_dir, args: list[str], point: str | None = None) -> subprocess.CompletedProcess:
    harness = [sys.executable, "-m", "ctrl_c_at", point, "--"] if point else ["paretolab"]
    return subprocess.run([*harness, *args], capture_output=True, text=True, env=ray_dir.env(), timeout=120)


@pytest.mark.parametrize("point", list(POINTS))
def test_ctrl_c_exits_130_with_the_resume_line_and_the_rerun_completes(point, ray_dirs, ray_cluster, tmp_path, write_spec,
                                                                       capsys):
    ray_dir = ray_dirs()
    store = tmp_path / "r"
    spec = write_spec(tmp_path, name="ctrlc", widths="[16, 32]", seeds=TRIALS // 2, max_steps=MAX_STEPS,
                      every=EVERY, target=-1, extra="resources: {pack_size: 1}\n")
    args = ["run", str(spec), "--store", str(store), "--workers", "1"]

    interrupted = paretolab_run(ray_dir, args, point)
    assert interrupted.returncode == 130, interrupted.stderr
    assert interrupted.stderr.splitlines()[-1] == (
        f"interrupted: every result that arrived is in the store; rerun `paretolab {' '.join(args)}` to resume")
    assert ray_dir.processes() == []  # Ray was shut down whole (none of its processes is left)

    capsys.readouterr()
    assert main(args) == 0  # the same command
    rerun = capsys.readouterr().out
    # (stopped while Ray shut down, every trial had ended: the rerun has nothing to run)
    assert f"ctrlc: {TRIALS} trials (" in rerun or f"ctrlc: nothing to run: all {TRIALS} trials are in the store" in rerun
    st = paretolab.open_store(store)
    assert st.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == TRIALS  # none ran twice
    curves = st.query("SELECT trial_id, count(*) AS n, count(DISTINCT step) AS d FROM metrics GROUP BY 1").to_pylist()
    assert len(curves) == TRIALS and all(c["n"] == c["d"] == ROWS_PER_TRIAL for c in curves), curves


HELD = """
import os, signal
import ray, ray._private.worker
from paretolab.clusters.connect import connect

real, done = ray._private.worker.connect, []

def connect_driver(*args, **kwargs):  # inside ray.init(): Ray's processes are up, the driver joins them
    os.kill(os.getpid(), signal.SIGINT)
    real(*args, **kwargs)
    done.append("driver connected")

ray._private.worker.connect = connect_driver
try:
    connect()
except KeyboardInterrupt:
    print(done, ray.is_initialized())
"""


def test_a_ctrl_c_inside_ray_init_waits_for_ray_to_be_up_then_shuts_it_down(ray_dirs):
    # a KeyboardInterrupt raised inside ray.init() leaves a half-started driver (seen: a segfault at exit)
    ray_dir = ray_dirs()
    out = subprocess.run([sys.executable, "-c", HELD], capture_output=True, text=True, env=ray_dir.env(), timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "['driver connected'] False"
    assert ray_dir.processes() == []

"""A `paretolab run` that starts its own Ray leaves none of its processes behind: after a run that
succeeds, one that fails once Ray is up, and one interrupted by Ctrl-C.

Each run gets a private `RAY_TMPDIR`; every process of the Ray it starts names that dir on its
command line, so Ray clusters that other programs run on the machine at the same time are not
counted.
"""

from __future__ import annotations

import signal
import subprocess

import pytest

import paretolab
from support import wait_for

RAY_DAEMONS = ("raylet/raylet", "gcs_server")


def start_run(ray_dir, spec, store) -> subprocess.Popen:
    return subprocess.Popen(["paretolab", "run", str(spec), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ray_dir.env())




def daemons(ray_dir) -> set[str]:
    return {name for name in RAY_DAEMONS if ray_dir.processes(name)}


def left_behind(ray_dir) -> list[str]:
    """Every process of that Ray still alive (daemons, workers, helpers), by executable and script."""
    return [" ".join(cmd.split()[:2]) for _, cmd in ray_dir.processes()]


# outcome: (spec additions, seeds, max_steps, exit status)
OUTCOMES = {
    "succeeds": ("", 1, 100, 0),
    "fails": ("resources: {cpu: 64}\n", 1, 100, 2),  # refused once Ray is up: no room for one worker
    "interrupted": ("resources: {cpu: 1, pack_size: 1}\n", 20, 2000, 130),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_run_leaves_no_ray_process(outcome, ray_dirs, tmp_path, write_spec):
    extra, seeds, max_steps, status = OUTCOMES[outcome]
    ray_dir = ray_dirs()
    spec = write_spec(tmp_path, widths="[16, 32]", seeds=seeds, max_steps=max_steps, target=0.0, extra=extra)
    proc = start_run(ray_dir, spec, tmp_path / "r")
    wait_for(lambda: daemons(ray_dir) == set(RAY_DAEMONS), "this run's Ray up", 120, proc, interval_s=0.05)
    if outcome == "interrupted":
        store = paretolab.open_store(tmp_path / "r")
        wait_for(lambda: bool(store.files("metrics")), "trials running", 180, proc, interval_s=0.05)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == status, err
    assert left_behind(ray_dir) == []

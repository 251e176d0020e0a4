"""The `paretolab` command end to end, as a user runs it: subprocesses with their own Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

import paretolab
from support import wait_for


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PARETOLAB_STORE": ""}
    return subprocess.run(["paretolab", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow  # runs a sweep in a subprocess (Ray)
def test_run_status_query_sweeps(tmp_path, write_spec):
    spec = write_spec(tmp_path, name="cli", widths="[16, 32]", seeds=2)
    store = str(tmp_path / "r")
    dry = cli("run", str(spec), "--store", store, "--dry-run")
    assert dry.returncode == 0 and "cli: 4 trials, 0 already in" in dry.stdout and "width=16" in dry.stdout
    assert not (tmp_path / "r").exists()  # a dry run writes nothing

    run = cli("run", str(spec), "--store", store, "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert "4 trials (4 run now, 0 already in the store)" in run.stdout
    assert f"results: {tmp_path / 'r'}" in run.stdout and "paretolab status" in run.stdout

    status = cli("status", "--store", store)
    assert status.returncode == 0 and "cli" in status.stdout and "done" in status.stdout

    rows = json.loads(cli("query", "SELECT width, count(*) AS n FROM trials GROUP BY 1 ORDER BY 1",
                          "--store", store, "--format", "json").stdout)
    assert rows == [{"width": 16, "n": 2}, {"width": 32, "n": 2}]
    csv = cli("query", "SELECT count(*) AS n FROM metrics", "--store", store, "--sweep", "cli", "--format", "csv")
    assert csv.stdout.splitlines()[0] == "n" and int(csv.stdout.splitlines()[1]) > 4
    table = cli("query", "SELECT sweep FROM sweeps", "--store", store)
    assert "cli" in table.stdout
    assert "cli" in cli("sweeps", "--store", store).stdout

    again = cli("run", str(spec), "--store", store)
    assert again.returncode == 0 and "cli: nothing to run: all 4 trials are in the store" in again.stdout
    dry = cli("run", str(spec), "--store", store, "--dry-run")
    assert "4 already in" in dry.stdout and "0 to run" in dry.stdout


@pytest.mark.slow  # a CLI process per case
@pytest.mark.parametrize("args, message", [
    (("run", "missing.yaml"), "missing.yaml: no such spec file"),
    (("run", "{spec}", "--workers", "0"), "--workers must be >= 1"),
    (("run", "{spec}", "--workers", "two"), "invalid int value"),
    (("status", "--store", "{tmp}/nowhere"), "no result store at"),
    (("query", "SELEC 1", "--store", "{store}"), "query failed: Parser Error"),
    (("query", "SELECT * FROM nothing", "--store", "{store}"), "Table with name nothing does not exist"),
    (("query", "SELECT 1", "--store", "{store}", "--sweep", "nope"), "unknown sweep 'nope'"),
    (("query", "SELECT 1", "--store", "{store}", "--format", "xml"), "invalid choice: 'xml'"),
    (("frob",), "invalid choice: 'frob'"),
    (("run", "{bad}"), "unknown parameter 'widht'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, write_spec, args, message):
    spec = write_spec(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("width:", "widht:"))
    store = tmp_path / "store"
    (store / "sweeps").mkdir(parents=True)
    fill = {"spec": str(spec), "tmp": str(tmp_path), "store": str(store), "bad": str(bad)}
    out = cli(*(a.format(**fill) for a in args))
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_ctrl_c_while_the_run_winds_down_is_held_until_ray_is_down(monkeypatch):
    # A Ctrl-C inside `ray.shutdown()` left the driver half shut down and the CLI exited 1 (seen when
    # Ctrl-C came as the last trials ended). Now the last flush and the shutdown finish, and the run
    # then ends as interrupted (CLI: 130), unless an error is already on its way out: that is kept.
    import ray

    from paretolab.clusters import connect
    from paretolab.errors import ClusterError
    from paretolab.orchestrator.events import Interrupted
    from paretolab.orchestrator.run import _execute, _Where

    steps, ctrl_c_at = [], []

    def step(name):
        def call(*_):
            if name in ctrl_c_at:
                os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler right after this call
            steps.append(name)
        return call

    class Writer:
        flush = step("flushed")

    class Store:
        def last_attempts(self):
            return {}

    monkeypatch.setattr(ray, "shutdown", step("shut down"))
    monkeypatch.setattr(connect, "connect", lambda address: True)
    monkeypatch.setattr(connect, "slots", lambda cpu, gpu: 1)
    monkeypatch.setattr(connect, "cluster_nodes", lambda: [(1.0, 0.0)])
    monkeypatch.setattr("paretolab.orchestrator.scheduler.Scheduler.run", lambda self, pending, attempts: "counts")
    sweep = type("Sweep", (), {"resources": type("R", (), {"cpu": 1, "gpu": 0})(), "max_attempts": 1, "name": "s", "code": None})()
    for at in ("flushed", "shut down"):
        ctrl_c_at[:] = [at]
        steps.clear()
        with pytest.raises(Interrupted):
            _execute(sweep, [], Store(), Writer(), _Where(None, 1, None, None))
        assert steps == ["flushed", "shut down"], at
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def refuse(self, pending, attempts):
        raise ClusterError("no room")

    monkeypatch.setattr("paretolab.orchestrator.scheduler.Scheduler.run", refuse)
    steps.clear()
    with pytest.raises(ClusterError):
        _execute(sweep, [], Store(), Writer(), _Where(None, 1, None, None))
    assert steps == ["flushed", "shut down"]


@pytest.mark.slow  # runs a sweep in a subprocess (Ray)
def test_ctrl_c_flushes_and_rerun_resumes(tmp_path, write_spec):
    # trials that never reach the target run their full 6,000 steps (seconds each on a worker, about
    # the driver's 2 s between flushes: the first trials file appears with trials still to run)
    # (unpacked: packed, the six would end together, at the end of the run)
    spec = write_spec(tmp_path, name="long", widths="[16]", seeds=6, max_steps=6000, every=300, target=-1,
                      extra="resources: {pack_size: 1}\n")
    store = tmp_path / "r"
    proc = subprocess.Popen(["paretolab", "run", str(spec), "--store", str(store), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any((store / "trials").glob("*.parquet")) or proc.poll() is not None, "a trials file", 120,
             interval_s=0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "rerun `paretolab run" in err and "to resume" in err
    finished = paretolab.open_store(store).ended()
    assert 1 <= len(finished) < 6

    rerun = cli("run", str(spec), "--store", str(store))
    assert rerun.returncode == 0, rerun.stderr
    assert f"({6 - len(finished)} run now, {len(finished)} already in the store)" in rerun.stdout
    st = paretolab.open_store(store)
    assert st.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == 6  # none ran twice
    per_trial = st.query("SELECT trial_id, count(*) AS n, count(DISTINCT step) AS d FROM metrics GROUP BY 1").to_pylist()
    assert len(per_trial) == 6 and all(r["n"] == r["d"] == 21 for r in per_trial)

"""A real multi-node Ray cluster on one machine: a head and worker nodes started by `ray start` as
separate processes on 127.0.0.1, a sweep spread over them with `paretolab run --address`, the
researcher's own code shipped to them, and a worker node lost mid-sweep."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import paretolab
from support import free_ports, wait_for

# The head has no CPU and each worker node one, so a worker actor of `cpu: 1` fits one per node:
# the spread over nodes is forced, not hoped for.
SPEC = """\
sweep: {name}
task: sparse_parity
task_args: {{n: 10, k: 2}}
model: mlp
grid:
  width: [32, 64]
fixed: {{lr: 0.05, batch_size: 32}}
seeds: {seeds}
max_steps: {max_steps}
eval: {{every: 100, test_size: 256}}
success: {{metric: test_error, op: "<", value: 0.0}}
resources: {{cpu: 1, pack_size: {pack_size}}}
"""


class LocalCluster:
    """Ray nodes started with `ray start`, each in its own process group (killing the group is
    losing the node: its raylet, its object store and the workers it spawned)."""

    def __init__(self, ray_dir):
        self.dir = ray_dir
        port, client_port, dashboard_port = free_ports(3)
        self.address = f"127.0.0.1:{port}"
        self._start(["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false",
                     f"--ray-client-server-port={client_port}", f"--dashboard-port={dashboard_port}"])
        self.head = self._newest_node()

    def add_node(self, num_cpus: int = 1) -> str:
        """Start a worker node; returns its node id."""
        self._start([f"--address={self.address}", f"--num-cpus={num_cpus}"])
        return self._newest_node()

    def kill_node(self, node_id: str) -> None:
        """SIGKILL every process of the node's process group."""
        os.killpg(self.raylets()[node_id], signal.SIGKILL)

    def raylets(self) -> dict[str, int]:
        """node id -> process group of its raylet, for the live raylets of this cluster."""
        found = {}
        for pid, cmd in self.dir.processes("raylet/raylet"):
            node = re.search(r"--node_id=([0-9a-f]+)", cmd)
            if node:
                found[node.group(1)] = os.getpgid(pid)
        return found

    def _start(self, args: list[str]) -> None:
        self._known = set(self.raylets())
        subprocess.run(["ray", "start", "--node-ip-address=127.0.0.1", "--disable-usage-stats", *args],
                       env=self.dir.env(), check=True, capture_output=True, timeout=120, start_new_session=True)

    def _newest_node(self) -> str:
        (node,) = set(self.raylets()) - self._known
        return node


def started(ray_dirs, nodes: int) -> LocalCluster:
    """A head without CPUs and `nodes` worker nodes of one CPU each (a worker actor of `cpu: 1` each)."""
    c = LocalCluster(ray_dirs())
    c.workers = [c.add_node(1) for _ in range(nodes)]
    return c


@pytest.fixture(scope="module")
def cluster(ray_dirs):
    c = started(ray_dirs, 3)
    yield c
    c.dir.kill()


def run_cli(cluster, spec, store, *args) -> subprocess.Popen:
    return subprocess.Popen(["paretolab", "run", str(spec), "--store", str(store), "--address", cluster.address, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.dir.env())


def live_nodes(cluster) -> set[str]:
    return set(cluster.raylets()) - {cluster.head}


# ---------------------------------------------------------------------------------------------
# the researcher's own code, shipped to the workers with Ray's runtime environment

# A trial's function that leaves a probe in a folder outside the spec folder (so not shipped): the
# folders its module and its helper module were imported from, the listing of its own folder, its
# process. With `spread`, it then waits until a trial of another worker has left a probe, so that
# the trials are spread over both nodes by construction, not by timing. It ends in its scratch
# folder (removed after the trial), as code that changes directories does (Hydra's runs did by
# default): the next trial on that worker must still find the code.
TRAIN = """\
import json, os, time

import {helper} as helper


def main(config, ctx):
    here = os.path.dirname(os.path.abspath(__file__))
    probe = dict(file=here, helper=os.path.dirname(os.path.abspath(helper.__file__)), listing=sorted(os.listdir(here)),
                 pid=os.getpid())
    folder = config["probes"]
    with open(os.path.join(folder, ctx.trial_id + ".part"), "w") as f:
        json.dump(probe, f)
    os.replace(os.path.join(folder, ctx.trial_id + ".part"), os.path.join(folder, ctx.trial_id + ".json"))
    deadline = time.monotonic() + 120
    while config["spread"] and len(pids(folder)) < 2:
        if time.monotonic() > deadline:
            raise TimeoutError("no trial ran on another worker within 120 s")
        time.sleep(0.05)  # polling for the other worker's probe
    os.chdir(ctx.workdir)
    ctx.report(step=1, loss=helper.LOSS)


def pids(folder):
    found = set()
    for name in os.listdir(folder):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as f:
                found.add(json.load(f)["pid"])
    return found
"""

CODE_SPEC = """\
sweep: {name}
trainable: {trainable}
grid:
  x: {xs}
fixed: {{probes: "{probes}", spread: {spread}}}
success: {{metric: loss, op: "<", value: 0.5}}
resources: {{cpu: 1}}
"""


def write_project(tmp_path, trainable: str, xs="[1, 2, 3, 4]", spread: bool = False):
    """`tmp_path/project`, a spec folder holding `spec.yaml`, and `train.py` with the helper module
    it imports (or both in the package `mypkg/` for a `mypkg.train:main` trainable); and the empty
    folder the trials leave their probes in, `tmp_path/probes`."""
    project, probes = tmp_path / "project", tmp_path / "probes"
    package = trainable.startswith("mypkg.")
    code = project / "mypkg" if package else project
    code.mkdir(parents=True)
    probes.mkdir()
    if package:
        (code / "__init__.py").write_text("")
    (code / "train.py").write_text(TRAIN.format(helper="mypkg.probe_helper" if package else "probe_helper"))
    (code / "probe_helper.py").write_text("LOSS = 0.25\n")
    (project / "spec.yaml").write_text(CODE_SPEC.format(name=f"code-{len(xs)}", trainable=trainable, xs=xs,
                                                        probes=probes, spread=str(spread).lower()))
    return project, probes


def run_in(project, env: dict, command: list[str]) -> None:
    """Run `command` from the spec folder, as a researcher does (Ray then puts that folder first on
    every worker's import path); every trial must have finished, in the store `results/` there."""
    proc = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    trials = paretolab.open_store(project / "results").query("SELECT status, success FROM trials").to_pylist()
    assert trials and all(t == {"status": "finished", "success": True} for t in trials), trials


def probes_in(folder) -> list[dict]:
    import json

    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_a_local_run_imports_the_code_from_the_spec_folder(ray_cluster, tmp_path, monkeypatch):
    """No address, on a Ray this process started: nothing is shipped, the code is the spec folder's."""
    project, probes = write_project(tmp_path, "train.py:main", xs="[1, 2]")
    monkeypatch.setattr(sys, "path", list(sys.path))  # loading the spec puts its folder on the path
    try:
        paretolab.run(project / "spec.yaml", store=project / "results")
    finally:
        for name in ("train", "probe_helper"):
            sys.modules.pop(name, None)
    found = probes_in(probes)
    assert len(found) == 2
    assert all(p["file"] == p["helper"] == str(project) for p in found)
    assert all("results" in p["listing"] for p in found)  # the spec folder itself, store and all


class TestShippedCode:
    """`paretolab run --address`: the workers import the researcher's code from the copy of the spec
    folder that Ray unpacked on their node. All nodes share this machine's disk, so the driver's
    folder is readable from the workers: what tells the copy apart is where the modules were loaded
    from (`__file__`: Ray's `runtime_resources/working_dir_files/` folder of the cluster's temp dir)
    and what it lacks: the store, which the driver's folder holds. They run on the module's cluster
    (three worker nodes) before any test loses a node of it."""

    def test_a_function_runs_from_the_copy_shipped_to_each_node(self, cluster, tmp_path):
        """`train.py:main` and the helper module it imports, on two workers; the store `results/` is
        in the spec folder (holding a checkpoint left from an earlier run) and must not be shipped."""
        project, probes = write_project(tmp_path, "train.py:main", spread=True)
        left = project / "results" / "checkpoints" / "0123456789abcdef" / "checkpoint.pkl"
        left.parent.mkdir(parents=True)
        left.write_bytes(os.urandom(1 << 20))
        run_in(project, cluster.dir.env(), ["paretolab", "run", "spec.yaml", "--address", cluster.address, "--workers", "2"])

        found = probes_in(probes)
        assert len(found) == 4
        for copy in {Path(p["file"]) for p in found}:
            assert copy.is_relative_to(cluster.dir.path) and "working_dir_files" in copy.parts, copy
        assert [p["helper"] for p in found] == [p["file"] for p in found]  # not the driver's folder, first on the path
        assert [p["listing"] for p in found] == [["probe_helper.py", "spec.yaml", "train.py"]] * 4  # not the store
        # both workers ran trials, and one ran a trial after one that left it in a removed folder
        assert len({p["pid"] for p in found}) == 2
        assert max(Counter(p["pid"] for p in found).values()) >= 2
        nodes = paretolab.open_store(project / "results").query("SELECT DISTINCT node FROM trials").column(0)
        assert len(set(nodes.to_pylist())) == 2 and set(nodes.to_pylist()) <= set(cluster.workers)  # one per node

    def test_a_package_runs_from_the_shipped_copy_in_a_script_that_joined_the_cluster(self, cluster, tmp_path):
        """A `module:function` trainable whose package is in the spec folder, run by a script that
        joined the cluster itself (`ray.init(address)`, then `paretolab.run` without an address)."""
        project, probes = write_project(tmp_path, "mypkg.train:main")
        script = f"import ray, paretolab; ray.init(address={cluster.address!r}); paretolab.run('spec.yaml')"
        run_in(project, cluster.dir.env(), [sys.executable, "-c", script])
        found = probes_in(probes)
        assert len(found) == 4
        for p in found:
            package = Path(p["file"])
            assert package.name == "mypkg" and "working_dir_files" in package.parent.parts, package
            assert package.is_relative_to(cluster.dir.path) and p["helper"] == p["file"], p
        assert [p["listing"] for p in found] == [["__init__.py", "probe_helper.py", "train.py"]] * 4


def test_sweep_spreads_over_the_worker_nodes(cluster, tmp_path):
    spec = tmp_path / "spread.yaml"
    # Work goes only to workers that are up, a fair share of what is left at a time: the packs must
    # last longer than the gap between the first and the last worker's start (1-3 s on 2 busy
    # cores), or the first ones finish everything before the last is up.
    spec.write_text(SPEC.format(name="spread", seeds=6, max_steps=5000, pack_size="auto"))
    proc = run_cli(cluster, spec, tmp_path / "r")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    store = paretolab.open_store(tmp_path / "r")
    rows = store.query("SELECT node, count(*) AS n FROM trials GROUP BY node").to_pylist()
    assert sum(r["n"] for r in rows) == 12
    # one worker per live worker node (the CLI fills the cluster), none on the CPU-less head
    assert {r["node"] for r in rows} == live_nodes(cluster)
    assert len(rows) >= 2


def test_lost_worker_node_mid_sweep(cluster, tmp_path):
    """A node dies while trials run on it: they are rerun elsewhere with attempt 2, every trial ends
    once as finished, and every curve holds each of its evaluation steps exactly once."""
    # long enough that each worker still has trials to run when the first results reach the store
    # (the driver flushes every 2 s): on an idle machine 1500 steps let the sweep end before the kill
    max_steps, n_trials = 6000, 24
    spec = tmp_path / "fault.yaml"
    spec.write_text(SPEC.format(name="fault", seeds=n_trials // 2, max_steps=max_steps, pack_size=1))
    store = paretolab.open_store(tmp_path / "r")
    # two workers on three nodes: the lost worker's replacement has a free node to go to
    proc = run_cli(cluster, spec, tmp_path / "r", "--workers", "2")
    try:
        victim = wait_for_finished_trial_on_a_node(store, proc, deadline_s=180)
        cluster.kill_node(victim)
        finished = store.query("SELECT count(*) FROM trials").column(0)[0].as_py()
        assert finished <= n_trials // 2, f"{finished} of {n_trials} trials ended before the kill: too late to test"
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert victim not in live_nodes(cluster)

    trials = store.query("SELECT trial_id, status, attempt, node, steps FROM trials").to_pylist()
    assert len(trials) == len({t["trial_id"] for t in trials}) == n_trials
    assert all(t["status"] == "finished" and t["steps"] == max_steps for t in trials), trials
    rerun = [t for t in trials if t["attempt"] == 2]
    assert rerun and all(t["node"] != victim for t in rerun)  # the trials in flight on the victim ran again
    assert store.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == n_trials  # no attempt 1 row for them

    expected = list(range(0, max_steps + 1, 100))
    curves = store.query("SELECT trial_id, attempt, list(step ORDER BY step) AS steps FROM metrics GROUP BY ALL").to_pylist()
    assert len(curves) == n_trials  # one attempt per trial shows
    assert all(c["steps"] == expected for c in curves)  # none lost, none duplicated
    by_trial = {t["trial_id"]: t["attempt"] for t in trials}
    assert all(c["attempt"] == by_trial[c["trial_id"]] for c in curves)


def wait_for_finished_trial_on_a_node(store, proc, deadline_s: float) -> str:
    """Poll the store until a trial has finished on some node, while the sweep still runs; that node."""
    def first_node():
        if store.files("trials"):
            nodes = store.query("SELECT node FROM trials ORDER BY finished_at LIMIT 1").column(0).to_pylist()
            return nodes[0] if nodes else None
        return None

    return wait_for(first_node, "a finished trial", deadline_s, proc, interval_s=0.1)



def test_a_lost_node_on_a_full_cluster_leaves_its_work_to_the_others(cluster, tmp_path):
    """Every CPU holds a worker, so the lost worker's replacement cannot be placed: it must hold no
    trials (work goes only to workers that are up) and the remaining workers finish the sweep."""
    nodes = live_nodes(cluster)
    assert len(nodes) >= 2
    max_steps, n_trials = 6000, 10
    spec = tmp_path / "full.yaml"
    spec.write_text(SPEC.format(name="full", seeds=n_trials // 2, max_steps=max_steps, pack_size=1))
    store = paretolab.open_store(tmp_path / "r")
    proc = run_cli(cluster, spec, tmp_path / "r", "--workers", str(len(nodes)))
    try:
        victim = wait_for_finished_trial_on_a_node(store, proc, deadline_s=180)
        cluster.kill_node(victim)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    trials = store.query("SELECT trial_id, status, attempt, node FROM trials").to_pylist()
    assert len(trials) == len({t["trial_id"] for t in trials}) == n_trials
    assert all(t["status"] == "finished" for t in trials), trials
    rerun = [t for t in trials if t["attempt"] == 2]
    assert rerun and all(t["node"] in nodes - {victim} for t in rerun)

"""A real multi-node Ray cluster on one machine: a head and worker nodes started by `ray start` as
separate processes on 127.0.0.1, a sweep spread over them with `paretolab run --address`, and a
worker node lost mid-sweep."""

from __future__ import annotations

import os
import re
import signal
import subprocess

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


@pytest.fixture(scope="module")
def cluster(ray_dirs):
    """A head without CPUs and three worker nodes of one CPU each."""
    d = ray_dirs()
    c = LocalCluster(d)
    c.workers = [c.add_node(1) for _ in range(3)]
    yield c
    d.kill()


def run_cli(cluster, spec, store, *args) -> subprocess.Popen:
    return subprocess.Popen(["paretolab", "run", str(spec), "--store", str(store), "--address", cluster.address, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.dir.env())


def live_nodes(cluster) -> set[str]:
    return set(cluster.raylets()) - {cluster.head}


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
    max_steps, n_trials = 6000, 16
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

"""`paretolab run --address` joins an existing Ray cluster instead of starting its own."""

from __future__ import annotations

import os
import subprocess
import sys

import paretolab

CLUSTER = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
print(cluster.address, cluster.head_node.node_id, flush=True)
sys.stdin.read()          # runs until the test closes our stdin
cluster.shutdown()
"""


def test_run_joins_a_cluster_by_address(tmp_path, write_spec):
    head = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address, node_id = head.stdout.readline().split()
        spec = write_spec(tmp_path, widths="[16]", seeds=2)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        out = subprocess.run(["paretolab", "run", str(spec), "--store", str(tmp_path / "r"), "--address", address],
                             capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        nodes = paretolab.open_store(tmp_path / "r").query("SELECT DISTINCT node FROM trials").column(0).to_pylist()
        assert nodes == [node_id]  # the trials ran on the cluster we started, not on a new local Ray
    finally:
        head.stdin.close()
        head.wait(timeout=120)


PRELOAD = """
import os, pathlib, ray
from paretolab.clusters.connect import connect, disconnect
assert connect()
assert "RAY_preload_python_modules" not in os.environ   # set only while Ray starts
session = ray._private.worker._global_node.get_session_dir_path()
for proc in pathlib.Path("/proc").glob("[0-9]*"):
    try:
        cmd = (proc / "cmdline").read_bytes().split(b"\\0")
        env = (proc / "environ").read_bytes().split(b"\\0")
    except OSError:
        continue
    if cmd[0].endswith(b"/raylet") and any(session.encode() in c for c in cmd):
        print([e.decode() for e in env if e.startswith(b"RAY_preload_python_modules=")])
disconnect()
"""


def test_an_embedded_ray_preloads_the_worker_code_into_its_prestarted_workers():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_preload_python_modules")}
    out = subprocess.run([sys.executable, "-c", PRELOAD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['RAY_preload_python_modules=paretolab.workers.actor']"

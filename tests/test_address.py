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

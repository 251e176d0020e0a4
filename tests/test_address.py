"""`paretolab run --address` joins an existing Ray cluster instead of starting its own, and fails at
once where no Ray answers; the Ray it starts without one is reachable from this machine only."""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import paretolab
import support
from paretolab.clusters.connect import PROBE_TIMEOUT_S

CLUSTER = """
import sys
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
print(cluster.address, cluster.head_node.node_id, flush=True)
sys.stdin.read()          # runs until the test closes our stdin
cluster.shutdown()
"""


@pytest.mark.slow  # starts Ray
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


@pytest.mark.slow  # starts Ray
def test_an_embedded_ray_preloads_the_worker_code_into_its_prestarted_workers():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_preload_python_modules")}
    out = subprocess.run([sys.executable, "-c", PRELOAD], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['RAY_preload_python_modules=paretolab.workers.actor']"


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


LISTENERS = """
import json, os, sys
import paretolab
from paretolab.orchestrator.events import Observer
from support import listening

class Listeners(Observer):
    seen = None
    def on_report(self, report):  # a worker trains: the driver, Ray's daemons and the workers are up
        if self.seen is None:
            self.seen = listening(os.getpid())

observer = Listeners()
paretolab.run(sys.argv[1], store=sys.argv[2], workers=1, observer=observer)
print(json.dumps(observer.seen))
"""


def test_an_embedded_ray_listens_on_loopback_only(ray_dirs, tmp_path, write_spec):
    # Ray 2.60 on Linux took the machine's network address for its node, and its GCS, raylet,
    # object manager, driver and workers listened on every interface (*:PORT)
    spec = write_spec(tmp_path, widths="[16]", seeds=1)
    out = subprocess.run([sys.executable, "-c", LISTENERS, str(spec), str(tmp_path / "r")], capture_output=True,
                         text=True, env=ray_dirs().env(), timeout=120)
    assert out.returncode == 0, out.stderr
    sockets = json.loads(out.stdout.splitlines()[-1])
    commands = {Path(command).name for command, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= commands and len(sockets) >= 4, sockets  # daemons, driver, worker
    assert [s for s in sockets if not loopback(s[1])] == []


@pytest.mark.slow  # a driver in a subprocess
def test_an_address_where_no_ray_answers_fails_at_once(tmp_path, write_spec):
    # nothing listens / a server that never answers / a server of another kind (HTTP): Ray itself
    # retried each for minutes (`--address 127.0.0.1:1` still waited after 200 s)
    spec = write_spec(tmp_path, widths="[16]", seeds=1)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    with socket.socket() as silent, http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler) as web:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel accepts connections; nobody reads or writes on them
        threading.Thread(target=web.serve_forever, daemon=True).start()
        cases = {f"127.0.0.1:{support.free_ports(1)[0]}": "connection refused; is Ray running there",
                 f"ray://127.0.0.1:{silent.getsockname()[1]}": f"no answer within {PROBE_TIMEOUT_S:g} s",
                 f"ray://127.0.0.1:{web.server_address[1]}": "what answers there is not Ray"}
        try:
            for address, reason in cases.items():
                args = ["paretolab", "run", str(spec), "--store", str(tmp_path / "r"), "--address", address]
                run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=PROBE_TIMEOUT_S + 25)
                assert run.returncode == 2 and run.stdout == "", run
                assert len(run.stderr.splitlines()) == 1, run.stderr
                assert run.stderr.startswith(f"error: cannot connect to {address}: {reason}"), run.stderr
        finally:
            web.shutdown()
    assert not (tmp_path / "r").exists()  # a refused run writes nothing

"""Connecting to Ray: an embedded local instance by default, or an existing cluster by address.

The embedded Ray listens on 127.0.0.1 only. Ray runs the code that whoever reaches its ports sends
it (its documented risk, CVE-2023-48022; its token authentication is the only check, and is off
where `RAY_AUTH_MODE=disabled`), and on Linux Ray 2.60 otherwise takes the machine's network
address for its node and has its GCS, raylet, object manager and every worker listen on all
interfaces (`*:PORT`). Ray's start and shutdown run with Ctrl-C held (`held_ctrl_c`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager, nullcontext

from paretolab.vocabulary.errors import ClusterError

WORKER_MODULE = "paretolab.workers.actor"
# An address where nothing answers fails after this long at most (refused at once); Ray 2.60's own
# connect tries 20 times, about 35 s each (`Node._init_gcs_client`; measured: still waiting at 200 s).
PROBE_TIMEOUT_S = 5.0
# What an HTTP/2 client sends first (RFC 9113, 3.4): the preface and an empty SETTINGS frame. Ray's
# servers speak gRPC, so HTTP/2, and answer with a SETTINGS frame (in 3 ms from a local GCS); a
# server of another kind does not, and Ray waits on it for minutes (an HTTP server: over 100 s).
HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
HTTP2_SETTINGS = 4  # the frame type, the 4th byte of a frame's header
# Ray's switch for clusters (`ray_constants.ENABLE_RAY_CLUSTER`, on except on Windows and macOS):
# off, a local node takes 127.0.0.1 for its address instead of the machine's network address, and
# Ray's servers bind there. The driver reads Ray's constant (set when ray is imported); the Ray
# processes it starts read the environment.
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def connect(address: str | None = None) -> bool:
    """Make sure this process is connected to Ray.

    Args:
        address: a Ray address (`auto`, `host:port`, `ray://host:10001`); None uses `RAY_ADDRESS`
            if set, else (or with `local`) starts a local Ray with this machine's CPUs and GPUs,
            reachable from this machine only (127.0.0.1).
    Returns:
        True if this call started the connection (and the caller should shut it down).
    Raises:
        ClusterError: Ray could not be started, or nothing answers at the address (within
            `PROBE_TIMEOUT_S`), or Ray could not connect to it.
        KeyboardInterrupt: Ctrl-C while Ray started; raised once the Ray it started is shut down.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    embedded = address in (None, "local")  # `local`: Ray's name for a new local instance
    if not embedded:
        _probe(address)
    # A KeyboardInterrupt raised inside ray.init() left a half-started driver (seen: a segfault at
    # exit, status 139), and a Ctrl-C there was reported lost (the sweep ran on to its end). Held, it
    # is acted on once Ray is up: Ray shuts down, then the KeyboardInterrupt.
    with held_ctrl_c() as held, (_embedded() if embedded else nullcontext()):
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR, configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = address or "a local Ray instance"
            raise ClusterError(f"cannot connect to {where}: {str(e).splitlines()[0]}") from None
        if held:
            ray.shutdown()
    if held:
        raise KeyboardInterrupt
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()


def slots(cpu: float, gpu: float) -> int:
    """How many workers of `cpu` cores and `gpu` GPUs the connected cluster holds: per node, as Ray
    places an actor on one node (a worker of 2 CPUs fits no cluster of two 1-CPU nodes)."""
    n = 0
    for node_cpu, node_gpu in cluster_nodes():
        fit = int(node_cpu // cpu) if cpu > 0 else 10**9
        if gpu > 0:
            fit = min(fit, int(node_gpu // gpu))
        n += fit
    return n


def cluster_nodes() -> list[tuple[float, float]]:
    """(CPUs, GPUs) of each live node of the connected cluster, as Ray reports them."""
    import ray

    return [(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0)) for n in ray.nodes() if n.get("Alive")]


def this_machine() -> list[tuple[float, float]]:
    """(CPUs, GPUs) of this machine, as the embedded Ray would find them, without starting Ray or
    importing torch: the CPUs this process may use, and the NVIDIA GPUs the driver lists
    (`/proc/driver/nvidia/gpus`, else `nvidia-smi -L`; none where neither is there)."""
    import shutil
    import subprocess

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    listed = "/proc/driver/nvidia/gpus"
    if os.path.isdir(listed):
        gpus = len(os.listdir(listed))
    elif shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        gpus = sum(1 for line in out.splitlines() if line.startswith("GPU "))
    else:
        gpus = 0
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # Ray counts only the GPUs this names
        gpus = min(gpus, len([d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]))
    return [(float(cpus), float(gpus))]


def missing(cpu: float, gpu: float, nodes: list[tuple[float, float]], where: str = "the cluster") -> str | None:
    """What keeps a worker of `cpu` CPUs and `gpu` GPUs off every node of `nodes` ((CPUs, GPUs)
    each), in one line naming what is there; None if one node holds it."""
    if any(c >= cpu and g >= gpu for c, g in nodes):
        return None
    most_cpu = max((c for c, _ in nodes), default=0.0)
    most_gpu = max((g for _, g in nodes), default=0.0)
    total_cpu = sum(c for c, _ in nodes)
    total_gpu = sum(g for _, g in nodes)
    if gpu > 0 and total_gpu == 0:
        return f"resources: a worker needs {_n(gpu, 'GPU')}; {where} has none (CPUs: {total_cpu:g})"
    if gpu > most_gpu:
        return f"resources: a worker needs {_n(gpu, 'GPU')}; the most one node of {where} has is {most_gpu:g}"
    if cpu > most_cpu:
        if len(nodes) == 1:
            return f"resources: a worker needs {_n(cpu, 'CPU')}; {where} has {most_cpu:g}"
        return (f"resources: a worker needs {_n(cpu, 'CPU')} on one node; the largest node of {where} has "
                f"{most_cpu:g} ({len(nodes)} nodes, {total_cpu:g} CPUs in all)")
    shapes = "; ".join(f"{_n(c, 'CPU')}, {_n(g, 'GPU')}" for c, g in nodes)
    return f"resources: a worker needs {_n(cpu, 'CPU')} and {_n(gpu, 'GPU')} on one node; no node of {where} has both ({shapes})"


def _n(amount: float, unit: str) -> str:
    return f"{amount:g} {unit}" + ("" if 0 < amount <= 1 else "s")


@contextmanager
def held_ctrl_c():
    """Hold a Ctrl-C until the block is done; yields a list that is non-empty if one came. A second
    Ctrl-C (once Python runs again: not inside a C call) exits at once with status 130.

    For what a KeyboardInterrupt must not cut: Ray's start (see `connect`), Ray's shutdown (one
    inside `ray.shutdown()` left the driver half shut down, and the process exited with status 1)
    and a run's last flush. Held only where Python's own handler is in place, in the main thread
    (after an interrupted run the scheduler has already made a second Ctrl-C exit at once)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield []
        return
    held: list[int] = []

    def hold(*_):
        if held:
            os._exit(130)
        held.append(signal.SIGINT)

    signal.signal(signal.SIGINT, hold)
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextmanager
def _embedded():
    """The settings the embedded Ray starts with, set for its start only: its node address is
    127.0.0.1 (`CLUSTER_SWITCH` off; `ray.init(_node_ip_address="127.0.0.1")` alone does not do
    it: Ray rewrites a loopback address to the machine's network address), and its prestarted
    workers import torch and the worker code while the driver is still starting, not when the first
    worker actor is created (Ray's experimental `RAY_preload_python_modules`; a user's own setting
    wins)."""
    from ray._private import ray_constants

    env = {CLUSTER_SWITCH: "0"}
    if "RAY_preload_python_modules" not in os.environ:
        env["RAY_preload_python_modules"] = WORKER_MODULE
    saved = {name: os.environ.get(name) for name in env}
    cluster = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(env)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _probe(address: str) -> None:
    """Fail fast where no Ray answers at `address`: nothing listens (refused at once), nothing
    answers (`PROBE_TIMEOUT_S`), or a server of another kind answers (the dashboard's HTTP on
    8265, say); on each Ray itself would wait for minutes. The address probed is the one Ray
    dials (`auto` resolved, a loopback host replaced by this machine's address, as Ray does)."""
    host, port = _dialed(address)
    if host is None:
        return  # left to Ray, which says what is wrong with it at once
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S) as s:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return  # Ray's gRPC with TLS: no plain HTTP/2 to look for
            s.settimeout(max(deadline - time.monotonic(), 0.001))
            s.sendall(HTTP2_HELLO)
            frame = s.recv(9, socket.MSG_WAITALL)
    except TimeoutError:
        raise ClusterError(f"cannot connect to {address}: no answer within {PROBE_TIMEOUT_S:g} s; "
                           "is Ray running there, and is its port open to this machine?") from None
    except OSError as e:
        reason = (e.strerror or type(e).__name__).lower()
        raise ClusterError(f"cannot connect to {address}: {reason}; is Ray running there "
                           "(`ray start --head`), and is that its port?") from None
    if len(frame) < 9 or frame[3] != HTTP2_SETTINGS:
        raise ClusterError(f"cannot connect to {address}: what answers there is not Ray (it does not speak gRPC); "
                           "give the head's GCS address (port 6379 by default) or ray://HEAD:10001")


def _dialed(address: str) -> tuple[str | None, int]:
    """(host, port) that `ray.init(address)` dials; (None, 0) if Ray finds none (`auto` without
    a cluster, a malformed address: Ray says so)."""
    if address.startswith("ray://"):  # Ray Client: dialed as given
        hostport = address.removeprefix("ray://").split("/")[0]
    else:
        from ray._private.services import canonicalize_bootstrap_address

        try:
            hostport = canonicalize_bootstrap_address(address) or ""
        except Exception:  # noqa: BLE001 - whatever Ray makes of the address, ray.init reports it
            return None, 0
    host, _, port = hostport.rpartition(":")
    return (host.strip("[]"), int(port)) if host and port.isdigit() else (None, 0)

"""Connecting to Ray: an embedded local instance by default, or an existing cluster by address."""

from __future__ import annotations

import logging
import os

from paretolab.errors import ClusterError

WORKER_MODULE = "paretolab.workers.actor"


def connect(address: str | None = None) -> bool:
    """Make sure this process is connected to Ray.

    Args:
        address: a Ray address (`auto`, `host:port`, `ray://host:10001`); None uses `RAY_ADDRESS`
            if set, else starts a local Ray with this machine's CPUs and GPUs.
    Returns:
        True if this call started the connection (and the caller should shut it down).
    Raises:
        ClusterError: Ray could not be started or the address could not be reached.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    # A local Ray prestarts one Python worker per CPU; with Ray's (experimental)
    # `RAY_preload_python_modules` in the environment its processes inherit, those workers import
    # torch and the worker code while the driver is still starting, not when the first worker actor
    # is created. The variable is set only for the start (a user's own setting wins).
    preload = address is None and "RAY_preload_python_modules" not in os.environ
    if preload:
        os.environ["RAY_preload_python_modules"] = WORKER_MODULE
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = address or "a local Ray instance"
        raise ClusterError(f"cannot connect to {where}: {str(e).splitlines()[0]}") from None
    finally:
        if preload:
            del os.environ["RAY_preload_python_modules"]
    return True


def disconnect() -> None:
    import ray

    ray.shutdown()


def slots(cpu: float, gpu: float) -> int:
    """How many workers of `cpu` cores and `gpu` GPUs the connected cluster holds."""
    import ray

    total = ray.cluster_resources()
    n = int(total.get("CPU", 0) // cpu) if cpu > 0 else 10**9
    if gpu > 0:
        n = min(n, int(total.get("GPU", 0) // gpu))
    return n

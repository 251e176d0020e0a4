"""A warm session: Ray and idle worker actors kept between runs in one Python process.

Starting Ray takes seconds (`ray.init()` 2.3-3.5 s on 2 cores), a worker actor about a second more,
and its first trial's optimizer another; a notebook's next small run should start training at once.
So `paretolab.run` connects through the process's `Session`: Ray stays up after a run, and the
workers that ended their run idle go back to the session's pool, where the next run whose workers
are alike takes them (`Scheduler` does: `take`, `give`).

Workers are alike when they hold the same resources, report as often, ship the same code (the
runtime environment), and load the same researcher's code (its digest: a worker imports a trial's
module once, so a worker that imported the old code must not run the new). Idle workers that are not
alike are stopped when a run takes workers, so that they free their share of the cluster.

The process's session is started by the first run and ends with `shutdown()` (`paretolab.shutdown`)
or at interpreter exit; `session()` (`paretolab.session`) scopes one to a `with` block. A Ray that
the process connected to itself (`ray.init` before the first run) is kept, never shut down here.
"""

from __future__ import annotations

import atexit
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from paretolab.clusters import connect as cluster


@dataclass
class Session:
    """Ray as a run left it (`address`: the address it was asked for, or `RAY_ADDRESS`; `started`:
    this session started it and shuts it down) and the idle workers (`idle`: (key, actor handle) pairs)."""

    address: str | None = None
    started: bool = False
    connected: bool = False
    idle: list[tuple[str, object]] = field(default_factory=list)

    def connect(self, address: str | None) -> None:
        """Be connected to Ray at `address` (see `clusters.connect.connect`): kept from the last run
        when it asked for the same address and Ray is still up; otherwise the workers are stopped,
        Ray (if this session started it) shut down, and the connection made anew.

        Raises:
            ClusterError: as `clusters.connect.connect`. KeyboardInterrupt: Ctrl-C while Ray started.
        """
        import os

        import ray

        address = address or os.environ.get("RAY_ADDRESS") or None  # as `connect` reads it
        if self.connected and ray.is_initialized() and _same(address, self.address):
            return
        self.close()
        self.started = cluster.connect(address)
        self.address, self.connected = address, True

    def take(self, key: str) -> list[object]:
        """The idle workers of `key`, taken out of the pool; idle workers of any other key are stopped
        (their resources go back to the cluster for the workers of this run)."""
        import ray

        mine = [actor for k, actor in self.idle if k == key]
        for k, actor in self.idle:
            if k != key:
                _kill(ray, actor)
        self.idle = []
        return mine

    def give(self, key: str, actors: list[object]) -> None:
        """Workers of `key` that ended a run idle and up, kept for the next run."""
        self.idle.extend((key, a) for a in actors)

    def close(self) -> None:
        """Stop the idle workers, and shut Ray down if this session started it."""
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            for _, actor in self.idle:
                _kill(ray, actor)
            if self.started:
                with cluster.held_ctrl_c():  # Ray's shutdown is not cut (see `held_ctrl_c`)
                    cluster.disconnect()
        self.idle, self.started, self.connected, self.address = [], False, False, None


def worker_key(resources, report_every_s: float, actor_options: dict, code) -> str:
    """What makes two workers alike (see the module's docstring), as text."""
    return json.dumps({"cpu": float(resources.cpu), "gpu": float(resources.gpu), "report_every_s": float(report_every_s),
                       "options": actor_options, "code": [code.root, code.digest] if code is not None else None},
                      sort_keys=True, default=str)


_process: Session | None = None  # the process's session: started by the first run, ended by `shutdown`
_scoped: list[Session] = []  # sessions of `with session()` blocks, innermost last


def current() -> Session:
    """The session a run uses: the innermost `with session()` block's, else the process's (started
    here on first use, and ended at interpreter exit)."""
    global _process
    if _scoped:
        return _scoped[-1]
    if _process is None:
        _process = Session()
        atexit.register(shutdown)
        _before_kernel_shutdown(shutdown)
    return _process


def shutdown() -> None:
    """End the process's session: stop its idle workers and the Ray it started. The next run starts
    them again. Does nothing when no session is up."""
    global _process
    if _process is not None:
        _process.close()
        _process = None


@contextmanager
def session() -> Iterator[Session]:
    """A session for the `with` block: the runs inside it share Ray and workers, which are stopped
    when the block ends (Ray too, if the block started it)."""
    s = Session()
    _scoped.append(s)
    try:
        yield s
    finally:
        _scoped.remove(s)
        s.close()


def _before_kernel_shutdown(callback) -> None:
    """In a Jupyter kernel, call `callback` when the kernel is asked to shut down or restart. Ray's
    processes are the kernel's children, and ipykernel ends its children before it exits, before
    `atexit`: SIGTERM, then waits of up to 10 s, then SIGKILL (a kernel that had run a sweep took about
    30 s to shut down, and Ray's processes printed stack traces as they were killed). Shut down first,
    Ray is gone by then. Elsewhere (no IPython kernel in this process), nothing to do."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    kernel = getattr(shell, "kernel", None)
    if kernel is None or not hasattr(kernel, "do_shutdown") or getattr(kernel, "_paretolab_shutdown", False):
        return
    original = kernel.do_shutdown

    def do_shutdown(restart):
        try:
            callback()
        except Exception as e:  # noqa: BLE001 - the kernel shuts down whatever happened here
            print(f"paretolab: could not stop Ray before the kernel shut down: {e}", file=sys.stderr)
        return original(restart)

    kernel.do_shutdown = do_shutdown
    kernel._paretolab_shutdown = True


def _same(a: str | None, b: str | None) -> bool:
    """Whether two addresses ask for the same Ray (None and `local` both ask for the embedded one)."""
    return (a or "local") == (b or "local")


def _kill(ray, actor) -> None:
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - gone already (its node lost, Ray restarted): nothing to stop
        pass

"""Run the paretolab CLI with a Ctrl-C (SIGINT to itself) at a named instant of `paretolab run`: the
test harness of tests/test_ctrl_c.py (a module, not a test).

    python -m ctrl_c_at POINT -- paretolab-args...

POINT is one of `POINTS`. The signal is sent by a wrapper around the call named there, just before
(or, for `trial-ended`, when) the real call runs; Ray and paretolab run as in production. The
process's argv reads `paretolab ARGS`, as the resume line the CLI prints quotes it.
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = {
    "before-ray": "paretolab asks for Ray (clusters.connect.connect), before Ray starts",
    "ray-processes": "inside ray.init(): the GCS is up, the raylet and the rest are being started",
    "ray-driver": "inside ray.init(): Ray's processes are up, the driver connects to them",
    "ray-up": "Ray is up, the scheduler is about to start its workers (Scheduler.start)",
    "trial-ended": "the first trial has ended (the progress view's first tick that counts one)",
    "shutdown": "every trial has ended, Ray shuts down (ray.shutdown)",
}


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # Python runs its handler as soon as this call returns


def before(owner, name: str) -> None:
    """Send the Ctrl-C at the first call of `owner.name`, just before it runs."""
    real, sent = getattr(owner, name), []

    def wrapper(*args, **kwargs):
        if not sent:
            sent.append(True)
            ctrl_c()
        return real(*args, **kwargs)

    setattr(owner, name, wrapper)


def at_first_trial_ended() -> None:
    from paretolab.progress import ProgressView

    real, sent = ProgressView.on_tick, []

    def on_tick(self, counts):
        real(self, counts)
        if counts.done and not sent:
            sent.append(True)
            ctrl_c()

    ProgressView.on_tick = on_tick


def main() -> int:
    point, args = sys.argv[1], sys.argv[3:]
    assert point in POINTS and sys.argv[2] == "--", sys.argv
    import ray
    import ray._private.node
    import ray._private.worker

    from paretolab.clusters import connect
    from paretolab.orchestrator.scheduler import Scheduler

    if point == "trial-ended":
        at_first_trial_ended()
    else:
        owner, name = {"before-ray": (connect, "connect"),
                       "ray-processes": (ray._private.node.Node, "start_ray_processes"),
                       "ray-driver": (ray._private.worker, "connect"),
                       "ray-up": (Scheduler, "start"),
                       "shutdown": (ray, "shutdown")}[point]
        before(owner, name)
    sys.argv = ["paretolab", *args]
    from paretolab.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())

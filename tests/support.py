"""Helpers that several test files share (importable because conftest.py puts this folder on the path)."""

from __future__ import annotations

import socket
import time
from pathlib import Path


TINY = """\
sweep: {name}
task: {task}
task_args: {{n: 10, k: 2}}
model: mlp
grid:
  width: {widths}
fixed: {{lr: 0.1, batch_size: 32}}
seeds: {seeds}
max_steps: {max_steps}
eval: {{every: {every}, test_size: 256}}
success: {{metric: test_error, op: "<=", value: {target}}}
"""


def write_spec(folder: Path, name: str = "tiny", task: str = "sparse_parity", widths="[16, 32]", seeds=2,
               max_steps=300, every=50, target=0.1, extra: str = "") -> Path:
    """Write a small sparse-parity spec (widths x seeds, MLP, lr 0.1, batch 32) and return its path."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY.format(name=name, task=task, widths=widths, seeds=seeds, max_steps=max_steps,
                                every=every, target=target) + extra)
    return path


def solo(trial):
    """Train `trial` alone to its end: (its metric rows, its `TrialResult`)."""
    from paretolab.workers.train import train

    rows, run = [], train(trial, 1)
    try:
        while True:
            rows.append(next(run))
    except StopIteration as end:
        return rows, end.value


def packed(trials):
    """Train `trials` as one pack: (every member's metric rows, {trial id: its `TrialResult`})."""
    from paretolab.workers.packed import train_pack
    from paretolab.workers.trial import Assignment, TrialResult

    items = list(train_pack([Assignment(t, 1) for t in trials]))
    return [r for r in items if not isinstance(r, TrialResult)], {r.trial_id: r for r in items if isinstance(r, TrialResult)}


def wait_for(condition, what: str = "the condition", timeout_s: float = 180, proc=None, interval_s: float = 0.2):
    """Poll `condition` until it returns something truthy, and return that. Fails after `timeout_s`,
    or as soon as `proc` (a subprocess that must still be running meanwhile) has ended."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {proc.communicate()}")
        assert time.monotonic() < deadline, f"{what}: not reached within {timeout_s} s"
        time.sleep(interval_s)  # polling interval, not a synchronization
    return value


def free_ports(n: int) -> list[int]:
    """`n` TCP ports that were free on 127.0.0.1 a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports

"""Helpers that several test files share, as plain functions (importable because conftest.py puts this
folder on the path): a helper used by more than one test file lives here, once; fixtures with setup
and teardown live in conftest.py."""

from __future__ import annotations

import os
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
    from paretolab.vocabulary.trial import Assignment, TrialResult

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


def process_tree(root: int) -> set[int]:
    """`root` and every live process under it (by parent pid, from /proc)."""
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # ended meanwhile
            continue
    tree, grew = {root}, True
    while grew:
        under = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree, grew = tree | under, bool(under)
    return tree


def listening(root: int) -> list[tuple[str, str, int]]:
    """(executable, address, port) of every listening TCP socket held by a process of `root`'s tree:
    the socket inodes of each process's open files, looked up in /proc/net/tcp and tcp6."""
    sockets = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)  # 32-bit words, each in the host's (little-endian) order
                raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
                sockets[f"socket:[{fields[9]}]"] = (socket.inet_ntop(family, raw), int(port, 16))
    found = []
    for pid in process_tree(root):
        try:
            executable = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            files = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:  # ended meanwhile
            continue
        found += [(executable, *sockets[f]) for f in files if f in sockets]
    return found


def store_count(store: Path, sql: str = "SELECT count(*) FROM trials") -> int:
    """The one value of `sql` over the store (0 while it holds no trials)."""
    import paretolab

    st = paretolab.open_store(store)
    return st.query(sql).column(0)[0].as_py() if st.files("trials") else 0


def make_store(root: Path, sweep: str, axes: list[str], trials: list[dict], metrics: list[dict] = (),
                success: tuple[str, str, float] = ("test_error", "<=", 0.1)) -> Path:
    """Write a store by hand, without Ray: `trials` rows (trial_id, config columns, and optionally
    status/success/n_params/...; sensible defaults are filled in) and `metrics` rows (trial_id, step,
    samples and metric columns; attempt defaults to 1). Returns the store folder."""
    from datetime import datetime, timezone

    from paretolab.store import Store, StoreWriter

    defaults = {"attempt": 1, "status": "finished", "seed": 0, "n_params": 100, "stopped_at_success": False,
                "error": None, "node": "n0", "finished_at": datetime(2026, 1, 1, tzinfo=timezone.utc)}
    rows = [{**defaults, **t} for t in trials]
    writer = StoreWriter(Store(root))
    writer.append("trials", rows)
    writer.append("metrics", [{"attempt": 1, **m} for m in metrics])
    metric, op, value = success
    writer.append("sweeps", [{
        "sweep": sweep, "spec": "", "path": "", "submitted_at": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "trial_ids": [r["trial_id"] for r in rows], "axes": list(axes),
        "parameters": sorted({k for r in trials for k in r if k != "trial_id"}),
        "success_metric": metric, "success_op": op, "success_value": value,
    }])
    writer.flush()
    return root

"""Helpers that several test files share (importable because conftest.py puts this folder on the path)."""

from __future__ import annotations

import socket


def solo(trial):
    """Train `trial` alone to its end: (its metric rows, its `TrialResult`)."""
    from paretolab.workers.train import train

    rows, run = [], train(trial, 1)
    try:
        while True:
            rows.append(next(run))
    except StopIteration as end:
        return rows, end.value


def free_ports(n: int) -> list[int]:
    """`n` TCP ports that were free on 127.0.0.1 a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports

"""Run the paretolab CLI with a fault at a named step of the store writer: the test harness of
tests/test_durability.py (a module, not a test).

    python -m faultpoints TABLE STEP N -- paretolab-args...

At the N-th file the store publishes in TABLE (`trials`, `metrics` or `sweeps`), at STEP:

- `fsync`: SIGKILL at the fsync of its temporary file (written, not yet durable);
- `rename`: SIGKILL at the rename of its temporary file (durable under its temporary name);
- `renamed`: SIGKILL right after the rename (before the folder's fsync);
- `published`: SIGKILL right after the folder's fsync (the file whole; the next not begun);
- `enospc`: that write, and every later write to the store, fails with ENOSPC (a disk that fills up
  and stays full), as the OS reports it at the fsync.

The faults are injected at the system calls the writer makes (`os.fsync`, `os.replace`), so the
writer runs as it does in production; the writer flushes every 0.05 s instead of every 2 s, so a
short sweep has many flushes.
"""

from __future__ import annotations

import errno
import os
import signal
import sys


def main() -> int:
    table, step, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    assert sys.argv[4] == "--", sys.argv
    store_args = sys.argv[5:]

    from paretolab.store import StoreWriter

    StoreWriter.__init__.__defaults__ = (50_000, 0.05)
    real_fsync, real_replace = os.fsync, os.replace
    state = {"files": 0, "full": False, "folder_of_kill": None}

    def kill() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    def ours(path: str) -> bool:
        return f"/{table}/." in path and path.endswith(".tmp")

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith(".tmp") and state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if ours(path):
            state["files"] += 1
            if state["files"] == nth and step == "fsync":
                kill()
            if state["files"] == nth and step == "enospc":
                state["full"] = True
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
        if state["folder_of_kill"] is not None and path == state["folder_of_kill"]:
            kill()

    def replace(src, dst) -> None:
        hit = ours(str(src)) and state["files"] == nth
        if hit and step == "rename":
            kill()
        real_replace(src, dst)
        if hit and step == "renamed":
            kill()
        if hit and step == "published":
            state["folder_of_kill"] = os.path.dirname(str(dst))

    os.fsync, os.replace = fsync, replace
    from paretolab.cli import main as cli

    return cli(store_args)


if __name__ == "__main__":
    sys.exit(main())

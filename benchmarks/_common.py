"""Helpers shared by the benchmark scripts (not a test, not part of the package)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def machine_line() -> str:
    """One line naming the machine: CPU, cores, memory, load, Python, torch and Ray versions."""
    import importlib.metadata as md

    u = platform.uname()
    cpu = platform.processor() or _cpu_model() or u.machine
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "absent"

    return (f"machine: {cpu} | {u.system} {u.release} {u.machine} | {os.cpu_count()} cores | {mem:.0f} GiB | "
            f"load {load} | python {platform.python_version()} | torch {version('torch')} | "
            f"ray {version('ray')} | duckdb {version('duckdb')} | pyarrow {version('pyarrow')}")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def scratch(prefix: str) -> Path:
    """A fresh scratch folder under /tmp (short path: Ray's unix sockets live under RAY_TMPDIR)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def cli_command() -> list[str]:
    """The `paretolab` console script, or `python -m paretolab.cli` when it is not on PATH."""
    exe = shutil.which("paretolab")
    return [exe] if exe else [sys.executable, "-m", "paretolab.cli"]


def clean_env(ray_tmp: Path) -> dict[str, str]:
    """The environment for a child `paretolab`: a private Ray temp dir, no RAY_ADDRESS, no default store."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PARETOLAB_STORE")}
    env["RAY_TMPDIR"] = str(ray_tmp)
    return env


def busy_warning(sample_s: float = 1.0) -> str | None:
    """A warning line when other processes keep the CPUs busy right now (sampled from /proc/stat over
    `sample_s`; the load average would also count a benchmark that has just ended)."""
    def read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    try:
        total0, idle0 = read()
        time.sleep(sample_s)
        total1, idle1 = read()
    except (OSError, ValueError, IndexError):
        return None
    busy = (1 - (idle1 - idle0) / max(1, total1 - total0)) * (os.cpu_count() or 1)
    if busy > 0.3:
        return (f"WARNING: {busy:.1f} of {os.cpu_count()} cores busy before the benchmark started: other processes "
                f"compete for the cores and inflate the wall times below; rerun on a quiet machine")
    return None

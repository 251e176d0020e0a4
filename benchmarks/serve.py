"""`paretolab serve` on a large store: the time and bytes of a sweep page's data, first and after
each change of the store, over real HTTP from a real server process.

    python benchmarks/serve.py [--trials 100000] [--evals 99] [--rounds 3]

The store is `benchmarks/synthetic_store.py`'s (10^5 trials, 10^7 metric rows, 40 files per table),
with a `wall_s` column added to its trials as a run writes it (`paretolab status` reads it). The
server is `paretolab serve --port 0` in its own process. A page's parts are fetched as the page's
script fetches them, six at a time (a browser's connections per host):

- first paint: the page, its choices (`/api/meta`), then every part, on a server just started
  (it has read the store's files once, before printing its address: the time that takes is
  printed too, as the server's start);
- update: what a driver's flush writes while the sweep runs (the store starts with its last
  `RUNNING` trials running: curves, no result) changes the store's signature: a trials file of
  200 of them that ended now and a metrics file of their last 1,000 evaluations; every part is
  recomputed (counts, cells, the phase diagram, the frontier all change) and fetched again, as the
  page does (its choices, then the parts), as soon as a poll of the signature shows the change.
  The poll is made every 20 ms, so the server has computed nothing of the update before it (a page
  polls every 2 s, and the server starts computing when it notices the change itself: a page
  usually finds part of the update done). Also printed: the time from the flush's write, which
  adds the wait for the store's next listing (at most once a second), and the server's pace (a
  change is shown no sooner than the last one's parts took: the benchmark flushes as soon as the
  page of the last change is complete);
- alone: each part computed in this process by itself, one after the other (its own time; the
  whole page's is their sum);
- cached: the same parts again with no change (what a second tab, or a poll with no change, costs).

Each figure is one round's (`--rounds`, default 3: first paint once, then the median update).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line  # noqa: E402
from synthetic_store import _write, generate  # noqa: E402

SWEEP = "synthetic"
FIGURES = {  # the sweep page's figures with its default choices on this sweep: (query, kind of numbers)
    "phase diagram": f"phase?s={SWEEP}&x=train_size&y=width",
    "curves": f"curves?s={SWEEP}&by=width&x=step&metric=test_error",
    "frontier": f"frontier?s={SWEEP}&x=train_size&by=width",
    "luck": f"luck?s={SWEEP}&by=width",
}
TABLES = {  # the page's tables, which it fetches first
    "status": f"/api/status?s={SWEEP}",
    "cells": f"/api/cells?s={SWEEP}&limit=100&offset=0",
    "transitions": f"/api/transitions?s={SWEEP}&by=width",
    "failures": f"/api/failures?s={SWEEP}",
    "spec": f"/api/spec?s={SWEEP}",
}
# In order: the tables, each figure's numbers (what it draws, as JSON; the figure is drawn from the
# same cached answer), then the figures as the page shows them (SVG).
PARTS = {**TABLES, **{f"{f} numbers": f"/api/{q}" for f, q in FIGURES.items()},
         **{f: "/fig/" + q.replace("?", ".svg?", 1) for f, q in FIGURES.items()}}
DATA = [p for p in PARTS if not PARTS[p].startswith("/fig/")]  # the page's data: every number it shows


RUNNING = 2_000  # trials of the store still running at the start: curves, no result yet
ENDING = 200  # of them that end in each update


def add_wall_s(root: Path) -> pa.Table:
    """Give every trials file of the synthetic store the `wall_s` column a run writes, and take the
    last `RUNNING` trials' results out of it (they are running): returns those rows."""
    held = []
    for path in sorted((root / "trials").glob("*.parquet")):
        t = pq.read_table(path)
        t = t.append_column("wall_s", pa.array(np.full(t.num_rows, 1.0)))
        plain = path.with_name(path.name.split(".crc32-")[0] + ".parquet")
        path.unlink()
        held.append(t)
    everything = pa.concat_tables(held)
    kept = everything.slice(0, everything.num_rows - RUNNING)
    for f, part in enumerate(np.array_split(np.arange(kept.num_rows), len(held))):
        _write(kept.take(part), root / "trials" / f"{f:05d}.parquet")
    return everything.slice(everything.num_rows - RUNNING)


def append_flush(root: Path, running: pa.Table, i: int) -> None:
    """A driver's flush: `ENDING` more of the running trials end now (a trials file) with their last
    five evaluations (a metrics file of 1,000 rows)."""
    ended = running.slice((i - 1) * ENDING, ENDING)
    now = pa.array([datetime.now(timezone.utc)] * ended.num_rows, pa.timestamp("us", tz="UTC"))
    _write(ended.set_column(ended.schema.get_field_index("finished_at"), "finished_at", now),
           root / "trials" / f"{90000 + i:05d}.parquet")
    ids = np.repeat(np.array(ended.column("trial_id").to_pylist()), 5)
    step = np.tile(np.arange(100, 105) * 100, ended.num_rows)
    final = np.repeat(np.where(np.array(ended.column("success").to_pylist()), 0.0, 0.5), 5)
    _write(pa.table({"trial_id": ids, "attempt": np.ones(len(ids), np.int64), "step": step, "samples": step * 32,
                     "wall_s": step * 0.01, "train_loss": final * 2, "train_error": final, "test_loss": final * 2,
                     "test_error": final, "test_acc": 1 - final}),
           root / "metrics" / f"{90000 + i:05d}.parquet")


def get(base: str, path: str) -> tuple[float, int]:
    start = time.perf_counter()
    with urllib.request.urlopen(base + path, timeout=600) as r:
        body = r.read()
        assert r.status == 200, (path, r.status)
    return time.perf_counter() - start, len(body)


def page(base: str, version: str, at_once: int = 6, opened: bool = True) -> tuple[float, dict[str, tuple[float, int]]]:
    """The sweep page's parts fetched `at_once` at a time, after the page itself and its choices
    where it is `opened` (an update asks for its choices with the parts, as the page does): (wall
    time of all, {part: (seconds from the start until it arrived, bytes)})."""
    start = time.perf_counter()

    def arrived(path: str) -> tuple[float, int]:
        size = get(base, f"{path}&v={version}" if "?" in path else path)[1]
        return time.perf_counter() - start, size

    parts = dict(PARTS)
    shown = {}
    if opened:
        arrived(f"/sweep?s={SWEEP}")
        shown["meta"] = arrived(f"/api/meta?s={SWEEP}")
    else:
        parts = {"meta": f"/api/meta?s={SWEEP}", **parts}
    with ThreadPoolExecutor(at_once) as pool:
        shown.update(zip(parts, pool.map(arrived, parts.values())))
    return time.perf_counter() - start, shown


def own_times(root: Path) -> dict[str, float]:
    """Each part computed alone in this process, one after the other, as the server computes it."""
    from paretolab.analysis import plot_numbers
    from paretolab.serve import data, figures
    from paretolab.serve.shared import SharedSnapshots
    from paretolab.store import Store

    figures.start_renderers()  # as the server does before it serves
    st = SharedSnapshots(Store(root))  # as the server reads a local store
    st.files("metrics"), st.files("trials")  # each file's seal, checked once per process

    def numbers(figure_):
        return {"phase diagram": lambda: plot_numbers.phase_numbers(st, SWEEP, "train_size", "width"),
                "curves": lambda: data.curve_bands(st, SWEEP, "width", "step", "test_error"),
                "frontier": lambda: plot_numbers.frontier_numbers(st, SWEEP, "train_size", by=["width"]),
                "luck": lambda: plot_numbers.luck_numbers(st, SWEEP, by=["width"])}[figure_]

    drawn = {"curves": figures.bands_figure}
    parts = {
        "meta": lambda: data.meta(st, SWEEP), "status": lambda: data.sweep_status(st, SWEEP),
        "cells": lambda: data.cells_table(st, SWEEP), "transitions": lambda: data.transitions_summary(st, SWEEP, "width"),
        "failures": lambda: data.failures(st, SWEEP), "spec": lambda: data.specs(st, SWEEP),
        **{f"{f} numbers": numbers(f) for f in FIGURES},
    }
    out = {}
    try:
        for name, make in parts.items():
            start = time.perf_counter()
            made = make()
            out[name] = time.perf_counter() - start
            if name.endswith(" numbers"):  # the figure drawn from them, in a renderer as the server draws it
                f = name.removesuffix(" numbers")
                start = time.perf_counter()
                figures.svg(drawn.get(f, figures.analysis_figure), made)
                out[f] = time.perf_counter() - start
    finally:
        figures.stop_renderers()
    return out


def signature(base: str) -> str:
    with urllib.request.urlopen(base + "/api/signature", timeout=60) as r:
        return json.loads(r.read())["signature"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--evals", type=int, default=99)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        start = time.perf_counter()
        generate(root, a.trials, a.evals, 40)
        running = add_wall_s(root)
        size = sum(f.stat().st_size for f in root.rglob("*.parquet")) / 2**20
        print(f"store: {a.trials} trials, {a.trials * (a.evals + 1)} metric rows, {size:.0f} MiB, "
              f"written in {time.perf_counter() - start:.1f} s")
        started = time.perf_counter()
        server = subprocess.Popen(["paretolab", "serve", "--store", str(root), "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        try:
            base = re.search(r"at (http://\S+)/", server.stdout.readline()).group(1)
            print(f"server started (renderers, the store read) in {time.perf_counter() - started:.2f} s")
            runs, since_write = [], []
            version = signature(base)
            for i in range(a.rounds):
                if i:
                    before = version
                    append_flush(root, running, i)
                    written = time.perf_counter()
                    while (version := signature(base)) == before:  # the page's poll, made as often as it
                        time.sleep(0.02)                            # can be: nothing is computed before it
                runs.append(page(base, version, opened=not i))
                if i:
                    since_write.append(time.perf_counter() - written)
            cached = page(base, signature(base))
            poll = min(get(base, "/api/signature")[0] for _ in range(20))
            sweeps = get(base, "/api/sweeps")[0]
        finally:
            server.terminate()
            server.wait(timeout=60)
        alone = own_times(root)
    first, updates = runs[0], runs[1:]
    update = sorted(updates, key=lambda r: r[0])[len(updates) // 2] if updates else None
    print("seconds from the start until each part arrived (first paint: from the page's request; update: from the "
          "poll that saw the change; six requests at a time, as a browser makes them; alone: each part computed by "
          "itself in this process)")
    print(f"{'part':<16}{'first paint':>12}{'update':>10}{'alone':>10}{'cached':>10}{'bytes':>10}")
    for part in ["meta", *PARTS]:
        u = f"{update[1][part][0]:.2f}" if update else "-"
        print(f"{part:<16}{first[1][part][0]:>12.2f}{u:>10}{alone[part]:>10.2f}{cached[1][part][0]:>10.3f}{first[1][part][1]:>10,}")
    total = sum(b for _, b in first[1].values())
    print(f"{'whole page':<16}{first[0]:>12.2f}{update[0] if update else float('nan'):>10.2f}{sum(alone.values()):>10.2f}"
          f"{cached[0]:>10.3f}{total:>10,}")
    if updates:
        print(f"updates: {', '.join(f'{r[0]:.2f}' for r in updates)} s (median {statistics.median(r[0] for r in updates):.2f}); "
              f"from the flush's write: {', '.join(f'{t:.2f}' for t in since_write)} s (the store is listed at most once a second)")
        tables = [max(r[1][p][0] for p in ["meta", *TABLES]) for r in updates]
        print(f"the tables of an update (meta, status, cells, transitions, failures, spec): "
              f"{', '.join(f'{t:.2f}' for t in tables)} s")
    for name, rounds in (("first paint", runs[:1]), ("update", updates)):
        if rounds:
            data_s = [max(r[1][p][0] for p in ["meta", *DATA]) for r in rounds]
            print(f"the page's data ({name}: meta, the tables and the figures' numbers): "
                  f"{', '.join(f'{t:.2f}' for t in data_s)} s; drawn too: {', '.join(f'{r[0]:.2f}' for r in rounds)} s")
    print(f"/api/signature (what each page polls every 2 s): {poll * 1000:.1f} ms; the sweeps page's data: {sweeps:.2f} s")


if __name__ == "__main__":
    main()

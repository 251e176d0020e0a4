"""Analysis speed on a large store: paretolab's frontier, luck and phase-boundary functions against
the same queries hand-written in DuckDB over one compacted Parquet file per table.

    python benchmarks/analysis.py [--store DIR]   # default: generate 10^5 trials / 10^7 rows in a temp dir

The store is read twice: with many files per table (as a running sweep leaves it) and after
`paretolab compact` (as a finished run leaves it); the hand-written side always reads one
compacted file per table. Each figure is the best of 3 runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line  # noqa: E402
from synthetic_store import generate  # noqa: E402

from paretolab.analysis.frontier import frontier  # noqa: E402
from paretolab.analysis.luck import luck  # noqa: E402
from paretolab.analysis.phases import phase_boundary  # noqa: E402
from paretolab.store import Store

CELLS = """
WITH s AS (SELECT trial_id, min(step) AS step, arg_min(samples, step) AS samples FROM '{m}'
           WHERE test_error <= 0.1 GROUP BY trial_id),
c AS (SELECT t.width, t.train_size, t.init, s.step AS cost FROM '{t}' t LEFT JOIN s USING (trial_id))
SELECT width, train_size, init, count(*) AS n, count(cost) AS succ, count(cost) / count(*) AS p, median(cost) AS cost
FROM c GROUP BY ALL"""

HAND = {
    "frontier": f"""
WITH cells AS ({CELLS}), q AS (SELECT * FROM cells WHERE p >= 0.5)
SELECT * FROM q a WHERE NOT EXISTS (SELECT 1 FROM q b WHERE b.train_size <= a.train_size AND b.cost <= a.cost
    AND (b.train_size < a.train_size OR b.cost < a.cost))""",
    "luck": f"""
WITH s AS (SELECT trial_id, min(step) AS cost FROM '{{m}}' WHERE test_error <= 0.1 GROUP BY trial_id),
c AS (SELECT t.width, t.train_size, t.init, s.cost,
             row_number() OVER (PARTITION BY t.width, t.train_size, t.init ORDER BY s.cost NULLS LAST) AS i,
             count(*) OVER (PARTITION BY t.width, t.train_size, t.init) AS n FROM '{{t}}' t LEFT JOIN s USING (trial_id)),
k AS (SELECT unnest([1, 2, 4, 8, 16, 32, 64, 128, 256, 500]) AS k)
SELECT width, train_size, init, k,
       sum(CASE WHEN cost IS NOT NULL AND n - i >= k - 1 THEN cost * exp(lgamma(n - i + 1) - lgamma(k) - lgamma(n - i - k + 2)
           - lgamma(n + 1) + lgamma(k + 1) + lgamma(n - k + 1)) END) AS weighted
FROM c, k WHERE k <= n GROUP BY ALL""",
    "phase boundary": f"""
WITH cells AS ({CELLS}), o AS (SELECT *, lag(train_size) OVER w AS lo, lag(p) OVER w AS plo FROM cells
    WHERE train_size IS NOT NULL WINDOW w AS (PARTITION BY width, init ORDER BY train_size))
SELECT width, init, min_by(10 ** (log10(lo) + (0.5 - plo) / (p - plo) * (log10(train_size) - log10(lo))), train_size)
FROM o WHERE plo < 0.5 AND p >= 0.5 GROUP BY ALL""",
}


def best_of_3(fn) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, help="an existing synthetic store (default: generate one)")
    a = p.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        root = a.store or Path(tmp) / "store"
        if a.store is None:
            generate(root, 100_000, 99, 40)
        store = Store(root)
        start = time.perf_counter()
        store.files("metrics"), store.files("trials")  # a new process checks each file's seal once
        seal_s = time.perf_counter() - start
        n_trials = store.query("SELECT count(*) FROM trials_all").column(0)[0].as_py()
        n_rows = store.query("SELECT count(*) FROM metrics_all").column(0)[0].as_py()
        size = sum(p.stat().st_size for p in root.rglob("*.parquet")) / 2**20
        print(f"store: {n_trials} trials, {n_rows} metric rows, {len(store.files('metrics'))} metric files, {size:.0f} MiB")
        print(f"checking every file's seal (CRC-32), once per process: {seal_s:.2f} s")
        flat = Path(tmp) / "flat"
        flat.mkdir()
        for table in ("trials", "metrics"):
            duckdb.execute(f"COPY (SELECT * FROM read_parquet('{root}/{table}/*.parquet', union_by_name=true)) "
                           f"TO '{flat}/{table}.parquet' (FORMAT parquet)")
        compacted = Path(tmp) / "compacted"
        shutil.copytree(root, compacted)
        with Store(compacted).lock():
            for table in ("trials", "metrics"):
                Store(compacted).compact(table)
        print(f"{'query':<16}{'store':<24}{'paretolab (s)':>15}{'hand DuckDB (s)':>17}{'ratio':>8}")
        for label, st in ((f"{len(store.files('metrics'))} files per table", store), ("compacted", Store(compacted))):
            ours = {
                "frontier": lambda: frontier(st, "synthetic", [("train_size", "min"), ("steps_to_success", "min")]),
                "luck": lambda: luck(st, "synthetic"),
                "phase boundary": lambda: phase_boundary(st, "synthetic", "train_size", by=["width", "init"]),
            }
            for name, fn in ours.items():
                sql = HAND[name].format(t=flat / "trials.parquet", m=flat / "metrics.parquet")
                t_ours = best_of_3(fn)
                t_hand = best_of_3(lambda: duckdb.connect().sql(sql).fetchall())
                print(f"{name:<16}{label:<24}{t_ours:>15.2f}{t_hand:>17.2f}{t_ours / t_hand:>7.2f}x")


if __name__ == "__main__":
    main()

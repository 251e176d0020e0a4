"""Write a synthetic result store of 10^5 trials and 10^7 metric rows, shaped like a parity sweep.

    python benchmarks/synthetic_store.py OUT_DIR [--trials 100000] [--evals 100] [--files 40]

Cells: width (10 values) x train_size (10 values) x init (dense, sparse); seeds fill the rest.
Each trial's success probability rises with log(train_size) and log(width); a successful trial's
test error sits on a plateau at 0.5, then drops to 0 over a few evaluations at a random onset.
Rows are spread over `--files` files per table, as a long run leaves them before compaction.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from paretolab.store.files import crc32_of, sealed_name

WIDTHS = np.array([10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000])
SIZES = np.array([100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000])
INITS = np.array(["dense", "sparse"])
EVERY = 100


def generate(out: Path, n_trials: int, n_evals: int, n_files: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    cells = len(WIDTHS) * len(SIZES) * len(INITS)
    i = np.arange(n_trials)
    w = WIDTHS[i % len(WIDTHS)]
    m = SIZES[(i // len(WIDTHS)) % len(SIZES)]
    init = INITS[(i // (len(WIDTHS) * len(SIZES))) % len(INITS)]
    seed_col = i // cells
    logit = 1.5 * (np.log10(m) - 3.0) + 0.8 * (np.log10(w) - 2.0) + np.where(init == "sparse", 0.5, 0.0)
    success = rng.random(n_trials) < 1 / (1 + np.exp(-logit))
    onset = rng.integers(5, n_evals - 10, n_trials)  # in evaluations
    steps_to_success = np.where(success, (onset + 3) * EVERY, -1)
    n_params = w * 52 + 1
    ids = np.char.add("t", i.astype(str))
    for table in ("trials", "metrics", "sweeps"):
        (out / table).mkdir(parents=True, exist_ok=True)
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for f, part in enumerate(np.array_split(i, n_files)):
        s = steps_to_success[part]
        trials = pa.table({
            "trial_id": ids[part], "attempt": np.ones(len(part), np.int64), "status": ["finished"] * len(part),
            "task": ["sparse_parity"] * len(part), "model": ["mlp"] * len(part), "n": np.full(len(part), 50),
            "k": np.full(len(part), 3), "train_size": m[part], "width": w[part], "init": init[part],
            "seed": seed_col[part], "steps": np.where(s > 0, s, n_evals * EVERY), "success": success[part],
            "steps_to_success": pa.array(np.where(s > 0, s, 0), mask=s < 0),
            "samples_to_success": pa.array(np.where(s > 0, s * 32, 0), mask=s < 0),
            "flops_to_success": pa.array(np.where(s > 0, 6.0 * n_params[part] * s * 32, 0), mask=s < 0),
            "n_params": n_params[part], "error": pa.nulls(len(part), pa.string()), "node": ["n0"] * len(part),
            "finished_at": pa.array([now] * len(part), pa.timestamp("us", tz="UTC")),
        })
        _write(trials, out / "trials" / f"{f:05d}.parquet")
        _metrics(out / "metrics" / f"{f:05d}.parquet", ids[part], success[part], onset[part], n_evals, rng)
    sweep = pa.table({"sweep": ["synthetic"], "spec": [""], "path": [""], "submitted_at": pa.array([now], pa.timestamp("us", tz="UTC")),
                      "trial_ids": [ids.tolist()], "axes": [["width", "train_size", "init"]],
                      "parameters": [["task", "model", "n", "k", "train_size", "width", "init", "seed"]],
                      "success_metric": ["test_error"], "success_op": ["<="], "success_value": [0.1]})
    _write(sweep, out / "sweeps" / "00000.parquet")


def _write(table: pa.Table, path: Path) -> None:
    """As the store writes a file: page checksums, and sealed with its CRC-32 in its name."""
    pq.write_table(table, path, write_page_checksum=True)
    path.rename(path.with_name(sealed_name(path.name, crc32_of(str(path)))))


def _metrics(path: Path, ids, success, onset, n_evals: int, rng) -> None:
    T = len(ids)
    e = np.tile(np.arange(n_evals + 1), T)
    on = np.repeat(onset, n_evals + 1)
    ok = np.repeat(success, n_evals + 1)
    drop = np.clip((e - on) / 4.0, 0, 1) * ok  # a 4-evaluation drop from the plateau to zero
    noise = rng.normal(0, 0.01, len(e))
    test_error = np.clip(0.5 * (1 - drop) + noise, 0, 1)
    test_loss = 1.0 * (1 - drop) + np.abs(noise)
    train_error = np.clip(0.5 * (1 - np.clip((e - on + 1) / 4.0, 0, 1) * ok) + noise, 0, 1)
    _write(pa.table({
        "trial_id": np.repeat(ids, n_evals + 1), "attempt": np.ones(len(e), np.int64), "step": e * EVERY,
        "samples": e * EVERY * 32, "wall_s": e * 0.01, "train_loss": test_loss, "train_error": train_error,
        "test_loss": test_loss, "test_error": test_error, "test_acc": 1 - test_error,
    }), path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--trials", type=int, default=100_000)
    p.add_argument("--evals", type=int, default=99, help="evaluations after step 0 (rows per trial - 1)")
    p.add_argument("--files", type=int, default=40)
    a = p.parse_args()
    start = time.perf_counter()
    generate(a.out, a.trials, a.evals, a.files)
    print(f"wrote {a.trials} trials and {a.trials * (a.evals + 1)} metric rows to {a.out} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

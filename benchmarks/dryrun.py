"""Driver cost of a 100,000-trial sweep: `--dry-run` and a no-op resume, in fresh subprocesses.

    python benchmarks/dryrun.py               # 3 repeats of each measurement
    python benchmarks/dryrun.py --repeat 1

The spec: (50, 3)-sparse parity, 10 widths (logspace 10..10^4) x 10 training-set sizes (null = online
included) x {dense, sparse with sparsity 2} (a zip: sparsity is set only for sparse) x 500 seeds
= 100,000 trials. Measured with `/usr/bin/time -v` (wall, peak RSS of the driver process):

  dry-run, empty store        `paretolab run SPEC --dry-run --store EMPTY`
  dry-run, full store         the same against a store holding all 100k trials
  no-op resume, 1st           `paretolab run SPEC --store FULL` where every trial is already finished;
                              the store has no `sweeps` row yet, so this run writes one (100k ids)
  no-op resume, again         the same once the `sweeps` row exists (it is read back and compared)

The full store is synthetic: one Parquet file in STORE/trials with the 100k trial ids from `expand`,
attempt 1, status 'finished', success true; nothing is trained. Every resume must report
"0 run now, 100000 already in the store" and must not start Ray (checked: the child runs with a
private RAY_TMPDIR that must still hold no `ray` folder afterwards). Targets: under 10 s and under
2 GB of driver memory for each.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import busy_warning, clean_env, cli_command, machine_line, scratch

TARGET_S = 10.0
TARGET_RSS_MB = 2048.0
N_TRIALS = 100_000

SPEC = """\
sweep: dryrun100k
task: sparse_parity
task_args: {n: 50, k: 3}
model: mlp
grid:
  width: {logspace: [10, 10000, 10]}
  train_size: [null, 100, 200, 500, 1000, 2000, 5000, 10000, 50000, 100000]
zip:
  init: [dense, sparse]
  sparsity: [null, 2]
fixed: {lr: 0.1, batch_size: 32, weight_decay: 0.01, loss: hinge}
seeds: 500
max_steps: 100000
eval: {every: 1000, test_size: 10000}
success: {metric: test_error, op: "<=", value: 0.1}
"""


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run `cmd` in a fresh process: (wall s, peak RSS MiB of the process tree's largest member, result)."""
    gnu_time = Path("/usr/bin/time")
    if gnu_time.exists():
        start = time.perf_counter()
        proc = subprocess.run([str(gnu_time), "-v", *cmd], capture_output=True, text=True, env=env, timeout=600)
        wall = time.perf_counter() - start
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        if not m:
            sys.exit(f"cannot read the peak RSS from /usr/bin/time -v:\n{proc.stderr[-2000:]}")
        return wall, int(m.group(1)) / 1024, proc
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if after <= before:
        print("warning: RUSAGE_CHILDREN max RSS did not grow; the figure is an upper bound from an earlier child")
    return wall, after / 1024, proc


def write_full_store(spec: Path, store: Path) -> float:
    """A store whose `trials` table says every trial of `spec` finished (no training). Returns seconds taken."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from paretolab.orchestrator.grid import expand
    from paretolab.spec import load_spec

    start = time.perf_counter()
    ids = [t.trial_id for t in expand(load_spec(spec))]
    assert len(ids) == N_TRIALS == len(set(ids)), f"the spec expands to {len(ids)} trials ({len(set(ids))} distinct)"
    n = len(ids)
    table = pa.table({
        "trial_id": pa.array(ids, pa.string()),
        "attempt": pa.array([1] * n, pa.int64()),
        "status": pa.array(["finished"] * n, pa.string()),
        "success": pa.array([True] * n, pa.bool_()),
    })
    (store / "trials").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, store / "trials" / f"{0:020d}-synthetic.parquet")
    return time.perf_counter() - start


PHASES = r"""
import json, sys, time
t = time.perf_counter(); out = {}
from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec
from paretolab.api import open_store
out["import spec + grid (torch comes with them)"] = time.perf_counter() - t; t = time.perf_counter()
import paretolab.progress
out["import progress view (scheduler: ray)"] = time.perf_counter() - t; t = time.perf_counter()
sweep = load_spec(sys.argv[1])
out["load_spec"] = time.perf_counter() - t; t = time.perf_counter()
trials = list(expand(sweep))
out[f"expand: {len(trials)} TrialConfigs + trial ids"] = time.perf_counter() - t; t = time.perf_counter()
ended = open_store(sys.argv[2]).ended()
out[f"store.ended(): {len(ended)} ids via DuckDB"] = time.perf_counter() - t
print(json.dumps(out))
"""


def breakdown(spec: Path, store: Path) -> dict[str, float]:
    """The phases of a no-op resume, timed inside one fresh process (read-only on the store)."""
    proc = subprocess.run([sys.executable, "-c", PHASES, str(spec), str(store)], capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


def measure(label: str, cmd: list[str], tmp: Path, expect: str, repeat: int, before_each=None) -> dict:
    walls, rss = [], []
    for i in range(repeat):
        if before_each is not None:
            before_each()
        ray_tmp = Path(tempfile.mkdtemp(prefix="rt_", dir=tmp))
        wall, peak, proc = timed(cmd, clean_env(ray_tmp))
        out = proc.stdout
        if proc.returncode != 0 or expect not in out:
            sys.exit(f"{label}: rc {proc.returncode}, expected {expect!r} in the output:\n{out}\n{proc.stderr[-3000:]}")
        if (ray_tmp / "ray").exists():
            sys.exit(f"{label}: Ray was started ({ray_tmp / 'ray'} exists)")
        walls.append(wall)
        rss.append(peak)
    return {"label": label, "walls": walls, "rss": rss, "first_line": out.splitlines()[0] if out else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="fresh subprocesses per measurement (default 3)")
    args = ap.parse_args()

    tmp = scratch("plbd_")
    spec = tmp / "dryrun100k.yaml"
    spec.write_text(SPEC)
    empty, full = tmp / "store_empty", tmp / "store_full"
    empty.mkdir()
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    print(f"scratch: {tmp}; {'/usr/bin/time -v' if Path('/usr/bin/time').exists() else 'getrusage(RUSAGE_CHILDREN)'} "
          f"for peak RSS; {args.repeat} fresh subprocess(es) per row")
    synth_s = write_full_store(spec, full)
    print(f"synthetic full store: {N_TRIALS} finished trial rows written in {synth_s:.1f} s (in this process, not a measured row)")

    cli = cli_command()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([*cli, "--help"], check=True, capture_output=True)
    help_s = time.perf_counter() - t

    dry_expect = f"dryrun100k: {N_TRIALS} trials, 0 already in"
    full_dry_expect = f"dryrun100k: {N_TRIALS} trials, {N_TRIALS} already in"
    resume_expect = f"dryrun100k: {N_TRIALS} trials (0 run now, {N_TRIALS} already in the store)"

    def drop_sweeps():
        shutil.rmtree(full / "sweeps", ignore_errors=True)

    rows = [
        measure("dry-run, empty store", [*cli, "run", str(spec), "--dry-run", "--store", str(empty)], tmp, dry_expect, args.repeat),
        measure("dry-run, full store (100k done)", [*cli, "run", str(spec), "--dry-run", "--store", str(full)], tmp,
                full_dry_expect, args.repeat),
        measure("no-op resume, 1st (writes the sweeps row)", [*cli, "run", str(spec), "--store", str(full)], tmp,
                resume_expect, args.repeat, before_each=drop_sweeps),
        measure("no-op resume, again (sweeps row present)", [*cli, "run", str(spec), "--store", str(full)], tmp,
                resume_expect, args.repeat),
    ]
    phases = breakdown(spec, full)
    sweeps_files = len(list((full / "sweeps").glob("*.parquet")))
    assert sweeps_files == 1, f"the repeated no-op resumes should write no further sweeps row; found {sweeps_files} files"

    print()
    print(f"{'what (100,000 trials)':<44} {'wall s median':>13} {'wall s max':>10} {'peak RSS MiB':>12} {'vs 10 s':>8} {'vs 2 GB':>8}")
    ok = True
    for r in rows:
        med, worst, rss = statistics.median(r["walls"]), max(r["walls"]), max(r["rss"])
        ok &= worst < TARGET_S and rss < TARGET_RSS_MB
        print(f"{r['label']:<44} {med:13.2f} {worst:10.2f} {rss:12.0f} {worst / TARGET_S:7.0%} {rss / TARGET_RSS_MB:7.0%}")
    print()
    print(f"{'for scale':<44} {'wall s':>13}")
    print(f"{'python -c pass':<44} {python_s:13.2f}")
    print(f"{'paretolab --help':<44} {help_s:13.2f}")
    print()
    print(f"{'where a resume spends it (one fresh process)':<44} {'s':>13}")
    for name, secs in phases.items():
        print(f"{name:<44} {secs:13.2f}")
    print()
    print(f"dry-run output: {rows[0]['first_line']}")
    print(f"resume output:  {rows[3]['first_line']}")
    print(f"Ray started by any resume: no (checked for every run); extra sweeps rows from repeated resumes: none")
    print(f"targets (< {TARGET_S:.0f} s and < {TARGET_RSS_MB / 1024:.0f} GB each, worst of {args.repeat}): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Driver cost of a 10^6-trial sweep: `--dry-run` and a no-op resume, in fresh subprocesses.

    python benchmarks/dryrun.py                              # 10^6 trials, 3 repeats of each measurement
    python benchmarks/dryrun.py --repeat 1 --trials 100000   # the earlier 10^5-trial grid
    python benchmarks/dryrun.py --repeat 1 --seeds 5         # 10^6 trials over 200,000 points

The spec: (50, 3)-sparse parity, 10 widths (logspace 10..10^4) x 10 training-set sizes (null = online
included) x {dense, sparse with sparsity 2} (a zip: sparsity is set only for sparse) x L learning
rates x `--seeds` seeds (500), with L = trials / (200 x seeds): 10 for 10^6 trials (2,000 points),
1 for 10^5 (the size this script measured before). Measured with
`/usr/bin/time -v` (wall, peak RSS of the driver process):

  dry-run, empty store        `paretolab run SPEC --dry-run --store EMPTY`
  dry-run, full store         the same against a store holding all the trials
  no-op resume, 1st           `paretolab run SPEC --store FULL` where every trial is already finished;
                              the store has no `sweeps` row yet, so this run writes one (every id)
  no-op resume, again         the same once the `sweeps` row exists (it is read back and compared)

The full store is synthetic: one Parquet file in STORE/trials with every trial id of the grid,
attempt 1, status 'finished', success true; nothing is trained. Every resume must report
"0 run now, N already in the store" and must not start Ray (checked: the child runs with a
private RAY_TMPDIR that must still hold no `ray` folder afterwards). Targets for 10^6 trials: a
dry run against an empty store under 5 s and 300 MiB of driver memory (the grid's part); against
the full store, and a no-op resume, under 10 s and 2 GB (they hold the store's 10^6 ended ids as a
Python set, `Store.ended`: the store's size, not the grid's).
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

TARGETS = {"dry-run, empty store": (5.0, 300.0), "other": (10.0, 2048.0)}  # (s, MiB) for 10^6 trials

SPEC = """\
sweep: {name}
task: sparse_parity
task_args: {{n: 50, k: 3}}
model: mlp
grid:
  width: {{logspace: [10, 10000, 10]}}
  train_size: [null, 100, 200, 500, 1000, 2000, 5000, 10000, 50000, 100000]
  lr: {{logspace: [0.01, 1, {lrs}]}}
zip:
  init: [dense, sparse]
  sparsity: [null, 2]
fixed: {{batch_size: 32, weight_decay: 0.01, loss: hinge}}
seeds: {seeds}
max_steps: 100000
eval: {{every: 1000, test_size: 10000}}
success: {{metric: test_error, op: "<=", value: 0.1}}
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


def write_full_store(spec: Path, store: Path, n_trials: int) -> float:
    """A store whose `trials` table says every trial of `spec` finished (no training). Returns seconds taken."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from paretolab.orchestrator.grid import Plan
    from paretolab.spec import load_spec

    start = time.perf_counter()
    ids = Plan(load_spec(spec)).trial_ids()
    assert len(ids) == n_trials, f"the spec has {len(ids)} trials, not {n_trials}"
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
from paretolab.orchestrator.grid import Plan
from paretolab.spec import load_spec
from paretolab.api import open_store
out["import spec + grid (torch comes with them)"] = time.perf_counter() - t; t = time.perf_counter()
import paretolab.progress
out["import progress view (scheduler: ray)"] = time.perf_counter() - t; t = time.perf_counter()
sweep = load_spec(sys.argv[1])
out["load_spec"] = time.perf_counter() - t; t = time.perf_counter()
plan = Plan(sweep)
out[f"Plan, empty store: {plan.total} trial ids"] = time.perf_counter() - t; t = time.perf_counter()
ended = open_store(sys.argv[2]).ended()
out[f"store.ended(): {len(ended)} ids via DuckDB"] = time.perf_counter() - t; t = time.perf_counter()
plan = Plan(sweep, ended)
out[f"Plan, full store: {plan.already_done} done"] = time.perf_counter() - t; t = time.perf_counter()
ids = plan.trial_ids()
out[f"the sweeps row's {len(ids)} ids"] = time.perf_counter() - t
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
    ap.add_argument("--trials", type=int, default=1_000_000, help="trials in the grid (default 10^6)")
    ap.add_argument("--seeds", type=int, default=500, help="seeds per grid point (default 500)")
    args = ap.parse_args()
    n_trials = args.trials
    lrs, rest = divmod(n_trials, 200 * args.seeds)
    if rest or not lrs:
        sys.exit(f"--trials must be a multiple of 200 x --seeds ({200 * args.seeds})")
    name = f"dryrun{n_trials}"

    tmp = scratch("plbd_")
    spec = tmp / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, lrs=lrs, seeds=args.seeds))
    empty, full = tmp / "store_empty", tmp / "store_full"
    empty.mkdir()
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    print(f"scratch: {tmp}; {'/usr/bin/time -v' if Path('/usr/bin/time').exists() else 'getrusage(RUSAGE_CHILDREN)'} "
          f"for peak RSS; {args.repeat} fresh subprocess(es) per row")
    print(f"grid: {n_trials:,} trials = {n_trials // args.seeds:,} points x {args.seeds} seeds")
    synth_s = write_full_store(spec, full, n_trials)
    print(f"synthetic full store: {n_trials} finished trial rows written in {synth_s:.1f} s (in this process, not a measured row)")

    cli = cli_command()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    python_s = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([*cli, "--help"], check=True, capture_output=True)
    help_s = time.perf_counter() - t

    dry_expect = f"{name}: {n_trials} trials, 0 already in"
    full_dry_expect = f"{name}: {n_trials} trials, {n_trials} already in"
    resume_expect = f"{name}: {n_trials} trials (0 run now, {n_trials} already in the store)"

    def drop_sweeps():
        shutil.rmtree(full / "sweeps", ignore_errors=True)

    rows = [
        measure("dry-run, empty store", [*cli, "run", str(spec), "--dry-run", "--store", str(empty)], tmp, dry_expect, args.repeat),
        measure("dry-run, full store (all done)", [*cli, "run", str(spec), "--dry-run", "--store", str(full)], tmp,
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
    print(f"{f'what ({n_trials:,} trials)':<44} {'wall s median':>13} {'wall s max':>10} {'peak RSS MiB':>12} "
          f"{'target':>14} {'met':>4}")
    ok = True
    for r in rows:
        med, worst, rss = statistics.median(r["walls"]), max(r["walls"]), max(r["rss"])
        target_s, target_mb = TARGETS.get(r["label"], TARGETS["other"])
        met = worst < target_s and rss < target_mb
        ok &= met
        print(f"{r['label']:<44} {med:13.2f} {worst:10.2f} {rss:12.0f} {f'{target_s:g} s, {target_mb:g} MiB':>14} "
              f"{'yes' if met else 'no':>4}")
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
    scale = "" if n_trials == 1_000_000 else f" (set for 10^6 trials; this grid has {n_trials:,})"
    print(f"targets (worst of {args.repeat}){scale}: {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Orchestration overhead per trial: paretolab versus a plain loop doing the same training work.

    python benchmarks/overhead.py                 # N = 2000 trials, medians of 3 repeats
    python benchmarks/overhead.py --trials 500 --repeat 1 --profile --skip-cli

N trials that do almost nothing ((10, 2)-sparse parity, MLP width 8, batch 8, one step, evaluations at
steps 0 and 1 on 16 test points), one per seed. Measured, in this order:

  1. loop       the same trials in one process: `for t in expand(load_spec(spec)): exhaust train(t, 1)`,
                torch on 1 thread like a worker actor with `resources.cpu: 1`; no Ray, no store.
  2. CLI        `paretolab run SPEC --store S` as a subprocess: interpreter start, imports, Ray start-up,
                worker start, the trials, the store, Ray shutdown.
  3. API        `paretolab.run(spec, store=S, workers=K)` after `ray.init()` was called in this process
                (steady state: no Ray start-up, but each run still starts its K worker actors),
                K = 1 at N and N/4 trials (to split fixed cost from cost per trial), and K = 2 at N.

The loop runs once unmeasured first (warm-up: first use of torch.optim imports torch._dynamo, about
1 s), so the baseline is warm; a worker actor pays those first-use costs inside paretolab's time.

overhead per trial = (wall - loop wall) / N. "marginal" removes the fixed costs (worker start, store
set-up) by comparing the runs at N and N/4. "driver CPU" is this process's CPU time (all threads,
Ray's included) during a run. With 2 workers on a 2-core machine the second core does trial work in
parallel and hides overhead, so the fair per-trial figure is K = 1. Every store is checked to hold
exactly N trial rows (N finished attempts, no duplicate) before a figure is printed.

Ray Tune reference figures (measured earlier on these machines): 1.2 s per trial with default settings,
38 ms per trial with reuse_actors=True.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import busy_warning, clean_env, cli_command, machine_line, scratch

TUNE_DEFAULT_MS = 1200.0
TUNE_REUSE_MS = 38.0

SPEC = """\
sweep: overhead
task: sparse_parity
task_args: {{n: 10, k: 2}}
model: mlp
model_args: {{width: 8}}
fixed: {{batch_size: 8}}
seeds: {seeds}
max_steps: 1
eval: {{every: 1, test_size: 16}}
resources: {{cpu: 1}}
"""


def write_spec(folder: Path, seeds: int, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SPEC.format(seeds=seeds))
    return path


def exhaust(gen):
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def loop(spec: Path, mark: int) -> tuple[float, float, int]:
    """Wall of the plain loop over every trial of `spec`, and its wall after the first `mark` trials."""
    from paretolab.orchestrator.grid import expand
    from paretolab.spec import load_spec
    from paretolab.workers.train import train

    start = time.perf_counter()
    at_mark, n = float("nan"), 0
    for t in expand(load_spec(spec)):
        result = exhaust(train(t, 1))
        assert result.status == "finished", result
        n += 1
        if n == mark:
            at_mark = time.perf_counter() - start
    return time.perf_counter() - start, at_mark, n


def loop_cached_registries(spec: Path) -> float:
    """Diagnostic: the same loop with `tasks()` / `models()` memoised in `train` (this process only)."""
    import paretolab.workers.train as tr

    saved = tr.tasks, tr.models
    tr.tasks, tr.models = functools.cache(tr.tasks), functools.cache(tr.models)
    try:
        return loop(spec, 0)[0]
    finally:
        tr.tasks, tr.models = saved


def check_store(store: Path, n: int) -> None:
    """The store holds exactly `n` trial rows, all finished, one attempt each, and 1-2 metric rows each
    (a trial that meets the success criterion at step 0 stops there)."""
    import paretolab

    s = paretolab.open_store(store)
    row = s.query("SELECT count(*) AS n, count(DISTINCT trial_id) AS ids, "
                  "count(*) FILTER (WHERE status = 'finished') AS finished, max(attempt) AS attempts "
                  "FROM trials_all").to_pylist()[0]
    assert row == {"n": n, "ids": n, "finished": n, "attempts": 1}, f"{store}: expected {n} finished trials, got {row}"
    m = s.query("SELECT count(*) AS n FROM metrics_all").column(0)[0].as_py()
    assert n <= m <= 2 * n, f"{store}: expected {n}..{2 * n} metric rows, got {m}"


def run_cli(spec: Path, store: Path, ray_tmp: Path, n: int) -> float:
    cmd = [*cli_command(), "run", str(spec), "--store", str(store)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(ray_tmp), timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or f"({n} run now, 0 already in the store)" not in proc.stdout:
        sys.exit(f"CLI run failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    check_store(store, n)
    return wall


def run_api(spec: Path, store: Path, workers: int, n: int, profile: bool = False) -> tuple[float, float]:
    """(wall s, driver CPU s) of `paretolab.run(spec, store=store, workers=workers)`; the store is checked."""
    import paretolab

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    cpu0 = _cpu_self()
    start = time.perf_counter()
    summary = paretolab.run(spec, store=store, workers=workers)
    wall = time.perf_counter() - start
    cpu = _cpu_self() - cpu0
    if prof is not None:
        import pstats

        prof.disable()
        print(f"\n--- cProfile of the driver, paretolab.run(workers={workers}), {n} trials (profiled: slower) ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    assert summary.total == summary.ran == n and summary.failed == 0, summary
    check_store(store, n)
    return wall, cpu


def _cpu_self() -> float:
    """User + system CPU seconds of this process, all threads (Ray's core-worker threads included)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def actor_timings(spec: Path) -> tuple[float, float, float]:
    """One worker actor, as the scheduler makes it: seconds to its first (empty) report, then the first
    trial it trains (first use of torch.optim in a fresh process), then a second trial (warm)."""
    import ray

    from paretolab.orchestrator.grid import expand
    from paretolab.spec import load_spec
    from paretolab.workers.actor import Worker
    from paretolab.vocabulary.trial import Assignment

    trials = list(expand(load_spec(spec)))[:2]

    def call(actor, chunk) -> float:
        start = time.perf_counter()
        for ref in actor.run.remote(chunk):
            ray.get(ref)
        return time.perf_counter() - start

    start = time.perf_counter()
    actor = ray.remote(concurrency_groups=Worker.CONCURRENCY_GROUPS)(Worker).options(num_cpus=1, max_restarts=0).remote(1, 1.0, "cpu")
    call(actor, [])
    up = time.perf_counter() - start
    first = call(actor, [[Assignment(trials[0], 1)]])  # one unit: the trial alone
    second = call(actor, [[Assignment(trials[1], 1)]])
    ray.kill(actor, no_restart=True)
    return up, first, second


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="number of trials N (default 2000)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the loop and of each API run; medians shown (default 3)")
    ap.add_argument("--profile", action="store_true", help="also cProfile the driver during one extra K=1 API run")
    ap.add_argument("--skip-cli", action="store_true", help="skip the CLI subprocess run")
    args = ap.parse_args()
    n, reps = args.trials, max(1, args.repeat)
    q = max(1, n // 4)

    tmp = scratch("plbo_")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_TMPDIR"] = str(tmp / "rt")  # this process's Ray, apart from any other on the machine
    spec, spec_q = write_spec(tmp, n, "overhead"), write_spec(tmp, q, "overhead_q")
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    print(f"scratch: {tmp}; N = {n} trials (and N/4 = {q} for the fixed/marginal split); medians of {reps} repeats")
    total_start = time.perf_counter()

    t = time.perf_counter()
    import torch

    import paretolab.workers.train  # noqa: F401  (torch, tasks, models)
    import_s = time.perf_counter() - t
    torch.set_num_threads(1)  # a worker with resources.cpu = 1 trains on one thread

    t = time.perf_counter()
    loop(spec_q, 0)  # warm-up: first-call costs of torch and the imports, not counted in the baseline
    warmup_s = time.perf_counter() - t
    loops = []
    for _ in range(reps):
        loop_s, loop_q_s, got = loop(spec, q)
        assert got == n, f"the spec expands to {got} trials, not {n}"
        loops.append((loop_s, loop_q_s))
    loop_s, loop_q_s = median([l[0] for l in loops]), median([l[1] for l in loops])
    cached_s = loop_cached_registries(spec)

    cli_s = float("nan") if args.skip_cli else run_cli(spec, tmp / "store_cli", tmp / "rtc", n)

    import ray

    t = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    ray_init_s = time.perf_counter() - t
    actor_up_s, first_trial_s, second_trial_s = actor_timings(spec)

    runs: dict[str, list[tuple[float, float]]] = {"k1": [], "k1q": [], "k2": []}
    for r in range(reps):
        runs["k1"].append(run_api(spec, tmp / f"store_k1_{r}", 1, n))
        runs["k1q"].append(run_api(spec_q, tmp / f"store_k1q_{r}", 1, q))
        runs["k2"].append(run_api(spec, tmp / f"store_k2_{r}", 2, n))
    if args.profile:
        run_api(spec, tmp / "store_prof", 1, n, profile=True)

    t = time.perf_counter()
    ray.shutdown()
    ray_shutdown_s = time.perf_counter() - t
    total_s = time.perf_counter() - total_start

    wall = {k: median([w for w, _ in v]) for k, v in runs.items()}
    cpu = {k: median([c for _, c in v]) for k, v in runs.items()}
    spread = {k: (min(w for w, _ in v), max(w for w, _ in v)) for k, v in runs.items()}

    def per_trial_ms(w: float, base: float, count: int) -> float:
        return (w - base) / count * 1e3

    k1 = per_trial_ms(wall["k1"], loop_s, n)
    marginal = ((wall["k1"] - wall["k1q"]) - (loop_s - loop_q_s)) / (n - q) * 1e3 if n > q else float("nan")
    fixed = (wall["k1"] - loop_s) - marginal / 1e3 * n

    def below(ms: float, ref: float) -> str:
        return f"{ref / ms:.0f}x" if ms > 0 else "n/a: <= 0, within noise"

    w = 56
    print()
    print(f"{'what':<{w}} {'wall s':>7} {'min-max s':>11} {'ms/trial':>9} {'overhead ms/trial':>18} {'driver CPU ms/trial':>20}")
    print(f"{'loop: train() in one process, no Ray, no store':<{w}} {loop_s:7.2f} "
          f"{min(l[0] for l in loops):5.2f}-{max(l[0] for l in loops):<5.2f} {loop_s / n * 1e3:9.2f} {'(baseline)':>18}")
    print(f"{'  diagnostic: same loop, tasks()/models() memoised':<{w}} {cached_s:7.2f} {'':>11} {cached_s / n * 1e3:9.2f}")
    if not args.skip_cli:
        print(f"{'paretolab run (CLI subprocess, incl. Ray start/stop)':<{w}} {cli_s:7.2f} {'(1 run)':>11} "
              f"{cli_s / n * 1e3:9.2f} {per_trial_ms(cli_s, loop_s, n):18.2f}")
    for key, label, count, base in (("k1", "paretolab.run API, Ray up, workers=1", n, loop_s),
                                    ("k1q", f"paretolab.run API, Ray up, workers=1, N/4={q}", q, loop_q_s),
                                    ("k2", "paretolab.run API, Ray up, workers=2 (2 cores)", n, loop_s)):
        lo, hi = spread[key]
        print(f"{label:<{w}} {wall[key]:7.2f} {lo:5.2f}-{hi:<5.2f} {wall[key] / count * 1e3:9.2f} "
              f"{per_trial_ms(wall[key], base, count):18.2f} {cpu[key] / count * 1e3:20.2f}")
    print()
    print(f"{'fixed costs':<{w}} {'s':>7}")
    print(f"{'import torch + paretolab.workers.train (this process)':<{w}} {import_s:7.2f}")
    print(f"{f'first pass, {q} trials, this process (warm-up, not counted)':<{w}} {warmup_s:7.2f}")
    print(f"{'ray.init() (local Ray start-up, this process)':<{w}} {ray_init_s:7.2f}")
    print(f"{'worker actor: creation to first (empty) report':<{w}} {actor_up_s:7.2f}")
    print(f"{'worker actor: its first trial (first torch.optim use)':<{w}} {first_trial_s:7.2f}")
    print(f"{'worker actor: its second trial (call round trip)':<{w}} {second_trial_s:7.3f}")
    print(f"{'ray.shutdown()':<{w}} {ray_shutdown_s:7.2f}")
    print(f"{'workers=1 fit: wall - loop = fixed + marginal x N; fixed':<{w}} {fixed:7.2f}")
    print()
    print(f"fair per-trial overhead (workers=1, Ray up, worker start included): {k1:.2f} ms/trial")
    print(f"marginal per-trial overhead (workers=1, N vs N/4, fixed costs removed): {marginal:.2f} ms/trial")
    print(f"Ray Tune default ({TUNE_DEFAULT_MS:.0f} ms/trial): {below(k1, TUNE_DEFAULT_MS)} below (marginal: {below(marginal, TUNE_DEFAULT_MS)})")
    print(f"Ray Tune reuse_actors=True ({TUNE_REUSE_MS:.0f} ms/trial): {below(k1, TUNE_REUSE_MS)} below Ray Tune at its best "
          f"(marginal: {below(marginal, TUNE_REUSE_MS)})")
    if not args.skip_cli:
        cli_ms = per_trial_ms(cli_s, loop_s, n)
        print(f"CLI, Ray start-up included, at N={n}: {cli_ms:.2f} ms/trial -> {below(cli_ms, TUNE_REUSE_MS)} below Ray Tune at its best")
    print(f"every store checked: N finished trial rows, one attempt each, no duplicate. total benchmark wall {total_s:.0f} s")


def median(xs: list[float]) -> float:
    import statistics

    return statistics.median(xs)


if __name__ == "__main__":
    main()

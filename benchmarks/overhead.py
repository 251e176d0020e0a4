"""Orchestration overhead per trial: paretolab versus a plain loop doing the same training work.

    python benchmarks/overhead.py                 # N = 2000 trials
    python benchmarks/overhead.py --trials 500 --profile

N trials that do almost nothing ((10, 2)-sparse parity, MLP width 8, batch 8, one step, evaluations at
steps 0 and 1 on 16 test points), one per seed. Measured, in this order:

  1. loop       the same trials in one process: `for t in expand(load_spec(spec)): exhaust train(t, 1)`,
                torch on 1 thread like a worker actor with `resources.cpu: 1`; no Ray, no store.
  2. CLI        `paretolab run SPEC --store S` as a subprocess: interpreter start, imports, Ray start-up,
                worker start, the trials, the store, Ray shutdown.
  3. API        `paretolab.run(spec, store=S, workers=K)` after `ray.init()` was called in this process
                (steady state: no Ray start-up, but each run still starts its K worker actors),
                K = 1 at N and N/4 trials (to split fixed cost from cost per trial), and K = 2 at N.

overhead per trial = (wall - loop wall) / N. With 2 workers on a 2-core machine the second core does
trial work in parallel and hides overhead, so the fair per-trial figure is K = 1. Every store is
checked to hold exactly N trial rows (N finished attempts, no duplicate) before a figure is printed.

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

from _common import clean_env, cli_command, machine_line, scratch

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
    """The store holds exactly `n` trial rows, all finished, one attempt each, and 2 metric rows each."""
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


def run_api(spec: Path, store: Path, workers: int, n: int, profile: bool = False) -> float:
    import paretolab

    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    start = time.perf_counter()
    summary = paretolab.run(spec, store=store, workers=workers)
    wall = time.perf_counter() - start
    if prof is not None:
        import pstats

        prof.disable()
        print(f"\n--- cProfile of the driver, paretolab.run(workers={workers}), {n} trials, top 25 by own time ---")
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        print("--- same, by cumulative time ---")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
    assert summary.total == summary.ran == n and summary.failed == 0, summary
    check_store(store, n)
    return wall


def actor_start_s() -> float:
    """Seconds to start one worker actor and get its first (empty) report: process start + torch import."""
    import ray

    from paretolab.workers.actor import Worker

    start = time.perf_counter()
    actor = ray.remote(Worker).options(num_cpus=1, max_restarts=0).remote(1, 1.0, "cpu")
    ray.get(next(actor.run.remote([])))
    wall = time.perf_counter() - start
    ray.kill(actor, no_restart=True)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="number of trials N (default 2000)")
    ap.add_argument("--profile", action="store_true", help="also cProfile the driver during a K=1 API run")
    ap.add_argument("--skip-cli", action="store_true", help="skip the CLI subprocess run")
    args = ap.parse_args()
    n = args.trials
    q = max(1, n // 4)

    tmp = scratch("plbo_")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_TMPDIR"] = str(tmp / "rt")  # this process's Ray, apart from any other on the machine
    spec, spec_q = write_spec(tmp, n, "overhead"), write_spec(tmp, q, "overhead_q")
    print(machine_line())
    print(f"scratch: {tmp}; N = {n} trials (and N/4 = {q} for the fixed/marginal split)")
    total_start = time.perf_counter()

    t = time.perf_counter()
    import torch

    import paretolab.workers.train  # noqa: F401  (torch, tasks, models)
    import_s = time.perf_counter() - t
    torch.set_num_threads(1)  # a worker with resources.cpu = 1 trains on one thread

    loop(spec_q, 0)  # warm-up: first-call costs of torch and the imports, not counted
    loop_s, loop_q_s, got = loop(spec, q)
    assert got == n, f"the spec expands to {got} trials, not {n}"
    cached_s = loop_cached_registries(spec)

    cli_s = float("nan") if args.skip_cli else run_cli(spec, tmp / "store_cli", tmp / "rtc", n)

    import ray

    t = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    ray_init_s = time.perf_counter() - t
    actor_warm_s = actor_start_s()  # Ray prestarts idle worker processes at init: only torch import + Worker()
    actor_s = actor_start_s()  # the prestarted process was used up: process start + ray + torch imports

    api = {}
    api[(1, n)] = run_api(spec, tmp / "store_k1", 1, n, profile=args.profile)
    api[(1, q)] = run_api(spec_q, tmp / "store_k1q", 1, q)
    api[(2, n)] = run_api(spec, tmp / "store_k2", 2, n)

    t = time.perf_counter()
    ray.shutdown()
    ray_shutdown_s = time.perf_counter() - t
    total_s = time.perf_counter() - total_start

    def per_trial_ms(wall: float, base: float, count: int) -> float:
        return (wall - base) / count * 1e3

    k1 = per_trial_ms(api[(1, n)], loop_s, n)
    marginal = ((api[(1, n)] - api[(1, q)]) - (loop_s - loop_q_s)) / (n - q) * 1e3 if n > q else float("nan")
    fixed = (api[(1, n)] - loop_s) - marginal / 1e3 * n

    def below(ms: float, ref: float) -> str:
        return f"{ref / ms:8.1f}x" if ms > 0 else "     n/a (no overhead measured)"

    print()
    print(f"{'what':<58} {'wall s':>8} {'ms/trial':>9} {'overhead ms/trial':>18}")
    print(f"{'loop: train() in one process, no Ray, no store':<58} {loop_s:8.2f} {loop_s / n * 1e3:9.2f} {'(baseline)':>18}")
    print(f"{'  diagnostic: same loop, tasks()/models() memoised':<58} {cached_s:8.2f} {cached_s / n * 1e3:9.2f} {'':>18}")
    if not args.skip_cli:
        print(f"{'paretolab run (CLI subprocess, incl. Ray start/stop)':<58} {cli_s:8.2f} {cli_s / n * 1e3:9.2f} {per_trial_ms(cli_s, loop_s, n):18.2f}")
    print(f"{'paretolab.run API, Ray already up, workers=1':<58} {api[(1, n)]:8.2f} {api[(1, n)] / n * 1e3:9.2f} {k1:18.2f}")
    print(f"{f'paretolab.run API, Ray already up, workers=1, N/4={q}':<58} {api[(1, q)]:8.2f} {api[(1, q)] / q * 1e3:9.2f} {per_trial_ms(api[(1, q)], loop_q_s, q):18.2f}")
    print(f"{'paretolab.run API, Ray already up, workers=2 (2 cores)':<58} {api[(2, n)]:8.2f} {api[(2, n)] / n * 1e3:9.2f} {per_trial_ms(api[(2, n)], loop_s, n):18.2f}")
    print()
    print(f"{'fixed costs':<58} {'s':>8}")
    print(f"{'import torch + paretolab.workers.train (in this process)':<58} {import_s:8.2f}")
    print(f"{'ray.init() (local Ray start-up, in this process)':<58} {ray_init_s:8.2f}")
    print(f"{'one worker actor on a prestarted Ray worker: start + 1st report':<58} {actor_warm_s:8.2f}")
    print(f"{'one worker actor on a new process: start + 1st report':<58} {actor_s:8.2f}")
    print(f"{'ray.shutdown()':<58} {ray_shutdown_s:8.2f}")
    print(f"{'K=1 fit wall-loop = fixed + marginal*N: fixed part':<58} {fixed:8.2f}")
    print()
    print(f"fair per-trial overhead (workers=1, Ray up, incl. actor start): {k1:.2f} ms/trial")
    print(f"marginal per-trial overhead (workers=1, from N and N/4, fixed costs removed): {marginal:.2f} ms/trial")
    print(f"vs Ray Tune default ({TUNE_DEFAULT_MS:.0f} ms/trial):           {below(k1, TUNE_DEFAULT_MS)} below (marginal: {below(marginal, TUNE_DEFAULT_MS).strip()})")
    print(f"vs Ray Tune at its best, reuse_actors ({TUNE_REUSE_MS:.0f} ms/trial): {below(k1, TUNE_REUSE_MS)} below Ray Tune at its best "
          f"(marginal: {below(marginal, TUNE_REUSE_MS).strip()})")
    if not args.skip_cli:
        cli_ms = per_trial_ms(cli_s, loop_s, n)
        print(f"CLI incl. Ray start-up: {cli_ms:.2f} ms/trial -> {below(cli_ms, TUNE_REUSE_MS).strip()} below Ray Tune at its best")
    print(f"all {n}-trial stores checked: {n} finished trial rows, one attempt each. total benchmark wall {total_s:.0f} s")


if __name__ == "__main__":
    main()

"""The same 200-trial sparse-parity grid run by a plain loop, by Ray Tune, and by paretolab.

    pip install -e ".[bench]"                      # Ray Tune, a benchmark-only extra
    python benchmarks/vs_ray_tune.py               # all 200 trials in every phase
    python benchmarks/vs_ray_tune.py --tune-trials 40 --skip-cli   # Tune on a subset, scaled to 200

The grid: (30, 3)-sparse parity, online, MLP width 64, SGD batch 32, lr in {0.05, 0.1} x seeds
0..99, at most 2000 steps, evaluation every 100 steps on 1000 test points, success test_error <= 0.1
with stop on success. Real trials (a few hundred ms each), all of one shape, so paretolab's packing
applies (`resources.pack_size: auto`, the default). Measured, in this order:

  1. loop       `for t in expand(spec): exhaust train(t, 1)` in this process, torch on 1 thread; no Ray,
                no store. Warmed up first on a few trials (first use of torch.optim), not counted.
  2. Tune       `tune.Tuner` with a function trainable that rebuilds the trial's TrialConfig from its
                config ({lr, seed}), runs `paretolab.workers.train.train` to the end and reports the
                final metrics once through `ray.tune.report`; 1 CPU per trial, max_concurrent_trials=2;
                once with Tune's defaults, once with `reuse_actors=True`. Timed: `Tuner.fit()` with Ray
                already up (its `ray.init()` is timed apart). `--tune-trials N` runs N of the trials and
                scales the wall to the full grid (fixed costs are scaled too: an estimate, flagged).
  3. paretolab  `paretolab run SPEC --store S` as a subprocess (interpreter start, imports, Ray start,
                the trials, the store, Ray shutdown), then `paretolab.run(spec, store=S, workers=2)` with
                Ray already up in this process (2 worker actors, each started by the run).
  4. warm       two `paretolab.run(spec, store=..., workers=2)` calls in this process, each into a store
                of its own (all 200 trials run each time), Ray not up before the first: the first
                starts Ray and the workers, the second finds them up (the process's warm session).
                `--warm-only` runs this phase alone (its ratios to Tune then need a full run).

Ray is shut down between phases; all Ray, Tune and store scratch lives in one temp folder. Every run
is checked to have completed every trial (Tune: one result per trial, no error, the expected trial
ids; paretolab: that many finished trial rows, one attempt each), and the success counts are compared
(Tune runs the same code as the loop, so it matches it exactly; packing changes only rounding).

Targets: paretolab at least 10x faster than Ray Tune at its best setting and at
least 5x faster than the plain loop; the warm second run under 60% of the first's wall and at least
20x faster than Ray Tune at its best. "x faster" = other wall / paretolab wall. The API row (Ray up) is
compared with Tune's `fit()` (Ray up); the CLI row, which includes Ray's start, with Tune's `fit()`
plus its `ray.init()`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import busy_warning, clean_env, cli_command, machine_line, scratch  # noqa: E402

LRS = (0.05, 0.1)
SPEC = """\
sweep: vs_ray_tune
task: sparse_parity
task_args: {{n: 30, k: 3}}
model: mlp
model_args: {{width: 64}}
fixed: {{batch_size: 32}}
grid: {{lr: {lrs}}}
seeds: {seeds}
max_steps: 2000
eval: {{every: 100, test_size: 1000}}
success: {{metric: test_error, op: "<=", value: 0.1, stop_on_success: true}}
resources: {{cpu: 1}}
"""
WARMUP_TRIALS = 4


def spec_text(seeds: list[int], lrs=LRS) -> str:
    return SPEC.format(lrs=list(lrs), seeds=list(seeds))


def exhaust(gen):
    try:
        while True:
            next(gen)
    except StopIteration as done:
        return done.value


def tune_trainable(config: dict) -> None:
    """One Tune trial: the grid point {lr, seed} -> its TrialConfig -> `train` to the end -> one report.
    Pickled by value (this script is __main__), so it rebuilds the trial from the spec text."""
    import torch
    from ray import tune

    from paretolab.orchestrator.grid import expand
    from paretolab.spec import parse_yaml
    from paretolab.workers.train import train

    torch.set_num_threads(1)  # as a paretolab worker with resources.cpu = 1
    (trial,) = expand(parse_yaml(spec_text([config["seed"]], [config["lr"]])))
    result = exhaust(train(trial, 1))
    tune.report({"paretolab_trial_id": trial.trial_id,  # Tune sets its own "trial_id"
                 "status": result.status, "success": result.success,
                 "steps": result.steps, **{k: v for k, v in result.final.items() if v is not None}})


def ray_init() -> float:
    """Start a local Ray in this process the way paretolab does (`clusters.connect`: no dashboard, the
    worker code preloaded into the prestarted workers, which gives Tune's trainables torch too); its
    wall in s."""
    from paretolab.clusters.connect import connect

    start = time.perf_counter()
    assert connect(), "Ray was already up"
    return time.perf_counter() - start


def ray_shutdown() -> None:
    import ray

    ray.shutdown()


def run_loop(trials) -> tuple[float, dict[str, bool]]:
    from paretolab.workers.train import train

    start = time.perf_counter()
    success = {}
    for t in trials:
        result = exhaust(train(t, 1))
        assert result.status == "finished", result
        success[t.trial_id] = result.success
    return time.perf_counter() - start, success


def run_tune(seeds: list[int], reuse: bool, storage: Path, expected: set[str]) -> tuple[float, float, dict[str, bool]]:
    """(ray.init s, Tuner.fit() s, success per trial id) of Tune over `LRS x seeds`, Ray shut down after."""
    from ray import tune

    init_s = ray_init()
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune_trainable, {"cpu": 1}),
            param_space={"lr": tune.grid_search(list(LRS)), "seed": tune.grid_search(list(seeds))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2, reuse_actors=reuse),
            run_config=tune.RunConfig(name=f"reuse_{reuse}", storage_path=str(storage), verbose=0),
        )
        start = time.perf_counter()
        grid = tuner.fit()
        fit_s = time.perf_counter() - start
    finally:
        ray_shutdown()
    n = len(LRS) * len(seeds)
    assert len(grid) == n and grid.num_errors == 0, f"Tune: {len(grid)} results, {grid.num_errors} errors, expected {n}"
    success = {}
    for r in grid:
        m = r.metrics
        assert m.get("status") == "finished" and m.get("paretolab_trial_id") in expected, f"Tune: unexpected result {m}"
        success[m["paretolab_trial_id"]] = bool(m["success"])
    assert len(success) == n, f"Tune: {len(success)} distinct trial ids, expected {n}"
    return init_s, fit_s, success


def store_success(store: Path, n: int) -> dict[str, bool]:
    """The store holds exactly `n` finished trial rows, one attempt each; their success per trial id."""
    import paretolab

    s = paretolab.open_store(store)
    rows = s.query("SELECT trial_id, status, attempt, success FROM trials_all").to_pylist()
    assert len(rows) == n and len({r["trial_id"] for r in rows}) == n, f"{store}: {len(rows)} trial rows, expected {n}"
    assert all(r["status"] == "finished" and r["attempt"] == 1 for r in rows), f"{store}: unfinished or retried trials"
    return {r["trial_id"]: bool(r["success"]) for r in rows}


def run_cli(spec: Path, store: Path, ray_tmp: Path, n: int) -> tuple[float, dict[str, bool]]:
    cmd = [*cli_command(), "run", str(spec), "--store", str(store)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(ray_tmp), timeout=1800)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or f"({n} run now, 0 already in the store)" not in proc.stdout:
        sys.exit(f"CLI run failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return wall, store_success(store, n)


def run_api(spec: Path, store: Path, n: int) -> tuple[float, float, dict[str, bool]]:
    """(ray.init s, paretolab.run s, success per trial id), Ray started before and shut down after."""
    import paretolab

    init_s = ray_init()
    try:
        start = time.perf_counter()
        summary = paretolab.run(spec, store=store, workers=2)
        wall = time.perf_counter() - start
    finally:
        ray_shutdown()
    assert summary.total == summary.ran == n and summary.failed == 0, summary
    return init_s, wall, store_success(store, n)


def run_warm(spec: Path, stores: list[Path], n: int) -> tuple[list[float], dict[str, bool]]:
    """(wall s of each `paretolab.run`, success per trial id of the last): the same grid into each
    store in turn, in this process, Ray not up before the first; the session shut down after."""
    import paretolab

    walls = []
    try:
        for store in stores:
            start = time.perf_counter()
            summary = paretolab.run(spec, store=store, workers=2, progress=False)
            walls.append(time.perf_counter() - start)
            assert summary.total == summary.ran == n and summary.failed == 0, summary
    finally:
        paretolab.shutdown()
    return walls, store_success(stores[-1], n)


def compare(name: str, got: dict[str, bool], ref: dict[str, bool]) -> str:
    """How `got`'s successes agree with the loop's on the same trials."""
    differ = sum(got[k] != ref[k] for k in got)
    return (f"{name}: {sum(got.values())}/{len(got)} succeeded (loop on the same trials: "
            f"{sum(ref[k] for k in got)}); {differ} trial(s) differ from the loop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100, help=f"seeds per lr (default 100: {len(LRS)} x 100 = 200 trials)")
    ap.add_argument("--tune-trials", type=int, default=None,
                    help="run only about this many trials under Ray Tune and scale its wall to the full grid")
    ap.add_argument("--skip-tune-default", action="store_true", help="skip Tune with its defaults (the slow one)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the `paretolab run` subprocess")
    ap.add_argument("--warm-only", action="store_true", help="run only the warm phase (two runs in this process)")
    args = ap.parse_args()

    tmp = scratch("plvt_")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_TMPDIR"] = str(tmp / "rt")  # this process's Ray, apart from any other on the machine
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)

    import torch

    from paretolab.orchestrator.grid import expand
    from paretolab.spec import parse_yaml

    seeds = list(range(args.seeds))
    text = spec_text(seeds)
    spec = tmp / "vs_ray_tune.yaml"
    spec.write_text(text)
    trials = list(expand(parse_yaml(text, str(spec))))
    n = len(trials)
    ids = {t.trial_id for t in trials}
    tune_seeds = seeds if args.tune_trials is None else seeds[: max(1, min(len(seeds), args.tune_trials // len(LRS)))]
    n_tune = len(LRS) * len(tune_seeds)
    scale = n / n_tune
    print(f"scratch: {tmp}; {n} trials ((30, 3)-sparse parity, width 64, batch 32, lr {list(LRS)} x {len(seeds)} seeds, "
          f"<= 2000 steps, stop at test_error <= 0.1)"
          + ("" if n_tune == n else f"; Ray Tune runs {n_tune} of them (seeds 0..{len(tune_seeds) - 1}), walls scaled x{scale:.2f}"))
    print(flush=True)
    total_start = time.perf_counter()
    if args.warm_only:
        (first, second), _ = run_warm(spec, [tmp / "store_warm1", tmp / "store_warm2"], n)
        print(f"warm: first run {first:.2f} s (Ray and workers started), second {second:.2f} s "
              f"({second / first:.0%} of the first; target < 60%)")
        return

    # 1. the plain loop
    torch.set_num_threads(1)
    run_loop(trials[:WARMUP_TRIALS])
    loop_s, loop_ok = run_loop(trials)
    print(f"loop done: {loop_s:.1f} s, {sum(loop_ok.values())}/{n} succeeded", flush=True)

    # 2. Ray Tune
    tune_rows = {}
    for reuse in ((True,) if args.skip_tune_default else (False, True)):
        init_s, fit_s, ok = run_tune(tune_seeds, reuse, tmp / "tune", ids)
        tune_rows[reuse] = (init_s, fit_s, ok)
        print(f"Tune reuse_actors={reuse} done: ray.init {init_s:.1f} s, fit {fit_s:.1f} s for {n_tune} trials", flush=True)

    # 3. paretolab
    cli = None if args.skip_cli else run_cli(spec, tmp / "store_cli", tmp / "rtc", n)
    if cli is not None:
        print(f"paretolab CLI done: {cli[0]:.1f} s", flush=True)
    api_init_s, api_s, api_ok = run_api(spec, tmp / "store_api", n)
    print(f"paretolab API done: ray.init {api_init_s:.1f} s, run {api_s:.1f} s", flush=True)
    (warm_first_s, warm_s), warm_ok = run_warm(spec, [tmp / "store_warm1", tmp / "store_warm2"], n)
    print(f"paretolab warm session done: first run {warm_first_s:.1f} s, second {warm_s:.1f} s", flush=True)
    total_s = time.perf_counter() - total_start

    best_reuse = min(tune_rows, key=lambda r: tune_rows[r][1])
    tune_best_s = tune_rows[best_reuse][1] * scale
    tune_best_init_s = tune_rows[best_reuse][0]

    scaled = " (scaled)" if n_tune != n else ""
    rows = [("loop: train() one after another, 1 process, 1 thread", loop_s, float("nan"), float("nan"))]
    for reuse, (init_s, fit_s, _) in tune_rows.items():
        label = f"Ray Tune, {'reuse_actors=True' if reuse else 'defaults'}, 2 concurrent{scaled}"
        rows.append((label, fit_s * scale, float("nan"), float("nan")))
    if cli is not None:
        rows.append(("paretolab run (CLI subprocess, incl. Ray start/stop)", cli[0],
                     (tune_best_s + tune_best_init_s) / cli[0], loop_s / cli[0]))
    rows.append(("paretolab.run API, Ray up, workers=2", api_s, tune_best_s / api_s, loop_s / api_s))
    rows.append(("paretolab.run, first in the process (starts Ray)", warm_first_s,
                 (tune_best_s + tune_best_init_s) / warm_first_s, loop_s / warm_first_s))
    rows.append(("paretolab.run, second in the process (warm)", warm_s, tune_best_s / warm_s, loop_s / warm_s))

    w = 62
    print()
    print(f"{'what (' + str(n) + ' trials)':<{w}} {'wall s':>8} {'trials/s':>9} {'s/trial':>8} {'vs Tune best':>13} {'vs loop':>8}")
    for label, wall, vs_tune, vs_loop in rows:
        rt = f"{vs_tune:12.1f}x" if vs_tune == vs_tune else f"{'':>13}"
        rl = f"{vs_loop:7.1f}x" if vs_loop == vs_loop else f"{'':>8}"
        print(f"{label:<{w}} {wall:8.2f} {n / wall:9.2f} {wall / n:8.3f} {rt} {rl}")
    print()
    for reuse, (init_s, fit_s, _) in tune_rows.items():
        per = (fit_s * scale - loop_s / 2) / n * 1e3
        print(f"Ray Tune {'reuse_actors=True' if reuse else 'defaults':<17}: ray.init {init_s:5.2f} s (not in the row above); "
              f"fit {fit_s:.2f} s for {n_tune} trials; overhead over loop/2 (2 cores): {per:.0f} ms/trial")
    print(f"paretolab API: ray.init {api_init_s:.2f} s (not in the row above)")
    print(f"Tune best = {'reuse_actors=True' if best_reuse else 'defaults'}: {tune_best_s:.2f} s"
          + (f" (+ {tune_best_init_s:.2f} s ray.init when compared with the CLI)" if cli is not None else ""))
    print()
    print(compare(f"Ray Tune ({'reuse_actors=True' if best_reuse else 'defaults'})", tune_rows[best_reuse][2], loop_ok))
    for reuse, (_, _, ok) in tune_rows.items():
        assert all(ok[k] == loop_ok[k] for k in ok), f"Tune reuse_actors={reuse} disagrees with the loop (same code)"
    if cli is not None:
        print(compare("paretolab CLI", cli[1], loop_ok))
    print(compare("paretolab API", api_ok, loop_ok))
    print(compare("paretolab warm", warm_ok, loop_ok))
    for name, ok in (("CLI", cli[1] if cli else None), ("API", api_ok), ("warm", warm_ok)):
        if ok is not None:
            assert abs(sum(ok.values()) - sum(loop_ok.values())) <= max(2, n // 20), f"paretolab {name}: success count far from the loop's"
    print()
    vs_tune, vs_loop = tune_best_s / api_s, loop_s / api_s
    print(f"target >= 10x faster than Ray Tune at its best: API {vs_tune:.1f}x -> {'MET' if vs_tune >= 10 else 'NOT met'}"
          + (f"; CLI (both incl. Ray start) {(tune_best_s + tune_best_init_s) / cli[0]:.1f}x -> "
             f"{'MET' if (tune_best_s + tune_best_init_s) / cli[0] >= 10 else 'NOT met'}" if cli is not None else ""))
    print(f"target >= 5x faster than the plain loop: API {vs_loop:.1f}x -> {'MET' if vs_loop >= 5 else 'NOT met'}"
          + (f"; CLI {loop_s / cli[0]:.1f}x -> {'MET' if loop_s / cli[0] >= 5 else 'NOT met'}" if cli is not None else ""))
    print(f"target warm second run < 60% of the first: {warm_s / warm_first_s:.0%} -> "
          f"{'MET' if warm_s < 0.6 * warm_first_s else 'NOT met'}; >= 20x Ray Tune at its best: "
          f"{tune_best_s / warm_s:.1f}x -> {'MET' if tune_best_s / warm_s >= 20 else 'NOT met'}")
    print(f"every run checked: all trials completed, one result each. total benchmark wall {total_s:.0f} s"
          + (f"; Ray Tune walls scaled from {n_tune} trials" if n_tune != n else ""))


if __name__ == "__main__":
    main()

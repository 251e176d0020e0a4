"""Overhead per trial of your own code: a function trial and a command trial against the same code
run without paretolab, with the built-in path measured in the same process for comparison.

    python benchmarks/own_code.py                        # N = 2000 function trials, M = 200 commands, 3 repeats
    python benchmarks/own_code.py --trials 500 --commands 50 --repeat 1

(a) Function trials. The function reports two rows (steps 0 and 1) and returns, one trial per
seed, N seeds (`trainable: trivial.py:main`). Baseline: the same function called N times in a plain
Python loop with a stand-in context whose `report` does nothing. The built-in path runs its own
near-empty trials ((10, 2)-sparse parity, MLP width 8, one step, rows at steps 0 and 1: the trials
of benchmarks/overhead.py) against its own loop (`train()` in this process), twice: as it runs by
default (packed) and with `resources: {pack_size: 1}` (one trial per call of the model, as a
function without a vectorized variant trains). Target: a function trial's overhead within 2 ms of
the built-in path's.

(b) Command trials. A script that prints two `##paretolab` lines and exits, M trials
(`command: [python, trivial_cmd.py]`). Baseline: `subprocess.run([sys.executable, script])` M
times, output captured, so that the start of the interpreter is in both. Target: under 50 ms per
trial beyond it.

Every run is `paretolab.run(spec, store, workers=1)` with Ray already up in this process (as in
benchmarks/overhead.py: the start of the worker is included, Ray's own start-up is not), at the
full count and at a quarter of it; "marginal" is the difference of the two, with the baseline's
difference taken off, per trial: the fixed costs (the worker's start, the store's set-up) removed.
overhead per trial = (paretolab wall - baseline wall) / trials. Every store is checked to hold
exactly its trials, finished, one attempt each, with their rows. Each repeat measures a baseline,
then the paretolab runs it is the baseline of, so that a load from other processes that comes and
goes meets both alike.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import busy_warning, machine_line, scratch
from overhead import SPEC as BUILTIN_SPEC
from overhead import check_store, loop, median

TRIVIAL = '''\
def main(config, ctx):
    """Two rows and a return: a trial that does nothing."""
    ctx.report(step=0, samples=0, test_error=0.5)
    ctx.report(step=1, samples=8, test_error=0.4)
    return {"done": 1.0}
'''
TRIVIAL_CMD = '''\
print('##paretolab {"step": 0, "samples": 0, "test_error": 0.5}')
print('##paretolab {"step": 1, "samples": 8, "test_error": 0.4}')
'''
FUNCTION_SPEC = """\
sweep: {name}
trainable: trivial.py:main
seeds: {seeds}
success: {{metric: test_error, op: "<=", value: 0.1}}
resources: {{cpu: 1}}
"""
COMMAND_SPEC = """\
sweep: {name}
command: [python, trivial_cmd.py]
seeds: {seeds}
success: {{metric: test_error, op: "<=", value: 0.1}}
resources: {{cpu: 1}}
"""


class StandIn:
    """What the plain loop hands the function: a context whose `report` keeps nothing."""

    def __init__(self, seed: int):
        self.seed, self.trial_id, self.attempt, self.device = seed, str(seed), 1, "cpu"
        self.n_params = self.flops_per_sample = None

    def report(self, step: int, samples: int | None = None, **metrics) -> bool:
        return False


def function_loop(folder: Path, n: int, mark: int) -> tuple[float, float]:
    """Wall of calling the function `n` times, and after the first `mark` calls."""
    sys.path.insert(0, str(folder))
    from trivial import main as trivial

    start, at_mark = time.perf_counter(), float("nan")
    for seed in range(n):
        trivial({"seed": seed}, StandIn(seed))
        if seed + 1 == mark:
            at_mark = time.perf_counter() - start
    return time.perf_counter() - start, at_mark


def command_loop(script: Path, m: int, mark: int) -> tuple[float, float]:
    """Wall of running the script `m` times as a subprocess, and after the first `mark` runs."""
    start, at_mark = time.perf_counter(), float("nan")
    for i in range(m):
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=script.parent)
        assert out.returncode == 0 and out.stdout.count("##paretolab") == 2, out
        if i + 1 == mark:
            at_mark = time.perf_counter() - start
    return time.perf_counter() - start, at_mark


def run(spec: Path, store: Path, n: int) -> float:
    """Wall of `paretolab.run(spec, store, workers=1)`; the store is checked to hold its `n` trials."""
    import paretolab

    start = time.perf_counter()
    summary = paretolab.run(spec, store=store, workers=1)
    wall = time.perf_counter() - start
    assert summary.total == summary.ran == n and summary.failed == 0, summary
    check_store(store, n)
    return wall


def write(folder: Path, name: str, template: str, seeds: int) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(template.format(name=name, seeds=seeds))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000, help="function and built-in trials N (default 2000)")
    ap.add_argument("--commands", type=int, default=200, help="command trials M (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of every loop and run; medians shown (default 3)")
    args = ap.parse_args()
    n, m, reps = args.trials, args.commands, max(1, args.repeat)
    nq, mq = max(1, n // 4), max(1, m // 4)

    tmp = scratch("plbc_")
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_TMPDIR"] = str(tmp / "rt")
    (tmp / "trivial.py").write_text(TRIVIAL)
    (tmp / "trivial_cmd.py").write_text(TRIVIAL_CMD)
    solo_spec = BUILTIN_SPEC.replace("resources: {{cpu: 1}}", "resources: {{cpu: 1, pack_size: 1}}")
    assert solo_spec != BUILTIN_SPEC
    specs = {  # name -> (spec, trials, its baseline)
        "function": (write(tmp, "function", FUNCTION_SPEC, n), n, "function"),
        "function_q": (write(tmp, "function_q", FUNCTION_SPEC, nq), nq, "function"),
        "builtin": (write(tmp, "builtin", BUILTIN_SPEC.replace("sweep: overhead", "sweep: {name}"), n), n, "builtin"),
        "builtin_q": (write(tmp, "builtin_q", BUILTIN_SPEC.replace("sweep: overhead", "sweep: {name}"), nq), nq, "builtin"),
        "builtin_solo": (write(tmp, "builtin_solo", solo_spec.replace("sweep: overhead", "sweep: {name}"), n), n, "builtin"),
        "builtin_solo_q": (write(tmp, "builtin_solo_q", solo_spec.replace("sweep: overhead", "sweep: {name}"), nq), nq,
                           "builtin"),
        "command": (write(tmp, "command", COMMAND_SPEC, m), m, "command"),
        "command_q": (write(tmp, "command_q", COMMAND_SPEC, mq), mq, "command"),
    }
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    print(f"scratch: {tmp}; N = {n} function and built-in trials (N/4 = {nq}), M = {m} command trials "
          f"(M/4 = {mq}); medians of {reps} repeats")
    total_start = time.perf_counter()

    import torch

    torch.set_num_threads(1)  # a worker with resources.cpu = 1 trains on one thread
    loop(specs["builtin_q"][0], 0)  # warm-up: first use of torch.optim, the imports
    command_loop(tmp / "trivial_cmd.py", 3, 0)  # warm-up: the interpreter's files in the page cache
    import ray

    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    baselines = {"function": lambda: function_loop(tmp, n, nq), "builtin": lambda: loop(specs["builtin"][0], nq)[:2],
                 "command": lambda: command_loop(tmp / "trivial_cmd.py", m, mq)}
    base: dict[str, list[tuple[float, float]]] = {kind: [] for kind in baselines}
    walls: dict[str, list[float]] = {name: [] for name in specs}
    for r in range(reps):  # each baseline next to its runs: a load that comes and goes hits both alike
        for kind, baseline in baselines.items():
            base[kind].append(baseline())
            for name, (spec, count, of) in specs.items():
                if of == kind:
                    walls[name].append(run(spec, tmp / f"store_{name}_{r}", count))
    ray.shutdown()
    total_s = time.perf_counter() - total_start

    loop_wall = {k: median([w for w, _ in v]) for k, v in base.items()}
    loop_mark = {k: median([q for _, q in v]) for k, v in base.items()}
    wall = {k: median(v) for k, v in walls.items()}

    def overhead_ms(name: str) -> float:
        spec, count, kind = specs[name]
        full = loop_wall[kind] if count in (n, m) else loop_mark[kind]
        return (wall[name] - full) / count * 1e3

    def marginal_ms(name: str) -> float:
        _, count, kind = specs[name]
        _, quarter, _ = specs[name + "_q"]
        return ((wall[name] - wall[name + "_q"]) - (loop_wall[kind] - loop_mark[kind])) / (count - quarter) * 1e3

    w = 58
    print()
    print(f"{'what':<{w}} {'wall s':>7} {'min-max s':>11} {'ms/trial':>9} {'overhead ms/trial':>18} {'marginal':>9}")
    for kind, label, count in (("function", f"loop: the function called {n}x, stand-in context", n),
                               ("builtin", f"loop: train() of {n} built-in trials in one process", n),
                               ("command", f"loop: subprocess.run(python script) {m}x", m)):
        lo, hi = min(x for x, _ in base[kind]), max(x for x, _ in base[kind])
        print(f"{label:<{w}} {loop_wall[kind]:7.2f} {lo:5.2f}-{hi:<5.2f} {loop_wall[kind] / count * 1e3:9.3f} {'(baseline)':>18}")
    for name, label in (("function", "paretolab: function trials"), ("builtin", "paretolab: built-in trials (packed)"),
                        ("builtin_solo", "paretolab: built-in trials, pack_size 1"),
                        ("command", "paretolab: command trials")):
        _, count, _ = specs[name]
        lo, hi = min(walls[name]), max(walls[name])
        print(f"{label + f', {count} trials':<{w}} {wall[name]:7.2f} {lo:5.2f}-{hi:<5.2f} {wall[name] / count * 1e3:9.3f} "
              f"{overhead_ms(name):18.2f} {marginal_ms(name):9.2f}")
    print()
    fn, builtin, solo, cmd = (overhead_ms(k) for k in ("function", "builtin", "builtin_solo", "command"))
    print(f"function trial overhead {fn:.2f} ms/trial; built-in {builtin:.2f} (packed), {solo:.2f} (pack_size 1): "
          f"{fn - builtin:+.2f} / {fn - solo:+.2f} ms against them (target: within 2 ms) -> "
          f"{'met' if fn - builtin <= 2 else 'NOT met'} against the default built-in path")
    print(f"  marginal: function {marginal_ms('function'):.2f}, built-in {marginal_ms('builtin'):.2f} (packed), "
          f"{marginal_ms('builtin_solo'):.2f} (pack_size 1) ms/trial")
    ratio = wall["function"] / loop_wall["function"] if loop_wall["function"] > 0 else float("inf")
    print(f"  function trials through paretolab / the plain loop: {ratio:.0f}x the wall "
          f"({wall['function']:.2f} s against {loop_wall['function']:.3f} s)")
    print(f"command trial overhead beyond the process start {cmd:.1f} ms/trial (marginal {marginal_ms('command'):.1f}; "
          f"target: under 50 ms) -> {'met' if cmd < 50 else 'NOT met'}; paretolab / the subprocess loop: "
          f"{wall['command'] / loop_wall['command']:.2f}x the wall")
    print(f"every store checked: its trials finished, one attempt each, 1-2 rows each. total benchmark wall {total_s:.0f} s")


if __name__ == "__main__":
    main()

"""Driver memory over a long sweep of tiny trials: does it stay flat as trials end?

    python benchmarks/memory.py                       # 10^4 trials, then 10^5, each in a fresh process
    python benchmarks/memory.py --trials 1000000      # one size (target: peak under 1 GiB)

Each size runs in its own Python process (so peaks do not mix): `paretolab.run` in that process on
a local Ray with 2 workers, over (10, 2)-sparse parity with an MLP of width 8, 2 steps, evaluated
at step 0 and the last step only (2 metric rows per trial), test set of 16 points. A thread samples
the driver's resident set (VmRSS) every 0.1 s; an observer notes it when 10%, 50% and 100% of the
trials have ended. The store is written to a scratch folder and removed afterwards.

Flat means: the growth from 10% to 100% of the trials is small, and ten times the trials add
little: the driver holds the grid's plan (10 bytes per trial, `grid.Plan`), the trials queued or
running, and rows until the next flush, not the expanded grid (which took about 0.7 KiB per trial
before it was streamed). Target: a peak under 1 GiB for 10^6 trials (Ray Tune's driver holds about
300 KB per trial, ray-project/ray#64231).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from _common import busy_warning, clean_env, machine_line, scratch

SPEC = """\
sweep: memory{n}
task: sparse_parity
task_args: {{n: 10, k: 2}}
model: mlp
grid:
  lr: {{logspace: [0.001, 1, {lrs}]}}
fixed: {{width: 8, batch_size: 8}}
seeds: 100
max_steps: 2
eval: {{every: 2, test_size: 16}}
success: {{metric: test_error, op: "<=", value: -1}}
"""


TARGET_MB = {1_000_000: 1024}  # peak RSS, by trials


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(n: int) -> dict:
    """Run an n-trial sweep in this process; RSS at the marks, and the peak."""
    import paretolab
    from paretolab.orchestrator.events import Observer

    folder = scratch("plmem")
    spec = folder / "memory.yaml"
    spec.write_text(SPEC.format(n=n, lrs=n // 100))
    marks: dict[str, float] = {"before run": rss_mb()}
    peak = [marks["before run"], "before run"]  # the peak, and the last mark passed when it was sampled
    done = threading.Event()

    def sample():
        while not done.wait(0.1):
            if (rss := rss_mb()) > peak[0]:
                peak[:] = rss, list(marks)[-1]

    class Marks(Observer):
        def on_tick(self, counts):
            for pct in (10, 50, 100):
                if f"{pct}%" not in marks and counts.done >= counts.total * pct / 100:
                    marks[f"{pct}%"] = rss_mb()

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        start = time.monotonic()
        summary = paretolab.run(spec, store=folder / "r", workers=2, observer=Marks())
        wall = time.monotonic() - start
    finally:
        done.set()
        thread.join()
        shutil.rmtree(folder, ignore_errors=True)
    assert summary.ran == n, summary
    return {"trials": n, "wall_s": round(wall, 1), **{k: round(v) for k, v in marks.items()},
            "peak_sampled": round(peak[0]), "peak_after": peak[1],
            "peak_ru_maxrss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(machine_line())
    if warning := busy_warning():
        print(warning)
    print("trials | wall | RSS before run | at 10% | at 50% | at 100% | peak (sampled, after which mark) | "
          "peak (ru_maxrss), MiB")
    for n in args.trials:
        if n % 100 or n < 1000:
            sys.exit("--trials: a multiple of 100, at least 1000")
        ray_tmp = scratch("plmemray")
        try:
            out = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                                 env=clean_env(ray_tmp), check=False)
        finally:
            shutil.rmtree(ray_tmp, ignore_errors=True)
        if out.returncode != 0:
            sys.exit(f"{n} trials failed:\n{out.stderr[-3000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        target = TARGET_MB.get(n)
        met = "" if target is None else f" (target < {target}: {'met' if r['peak_ru_maxrss'] < target else 'NOT met'})"
        print(f"{r['trials']:,} | {r['wall_s']} s | {r['before run']} | {r['10%']} | {r['50%']} | {r['100%']} | "
              f"{r['peak_sampled']} (after {r['peak_after']}) | {r['peak_ru_maxrss']}{met}", flush=True)


if __name__ == "__main__":
    main()

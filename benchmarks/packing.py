"""Packed training against one trial at a time, in one process on this machine.

    python benchmarks/packing.py [--steps 2000] [--widths 100,1000] [--packs 8,64,256]

Offline (50, 3)-sparse parity, training set 1000, batch 32, `--steps` steps, evaluation only at
the start and the end (so the figures are training throughput). Solo: `workers.train.train`, one
trial after another. Packed: `workers.packed.train_pack` on packs of P trials (different seeds).
Both on one torch thread, as a worker with `resources.cpu: 1` runs. Prints trials per hour, the
speed-up, and the fraction of this machine's measured fp32 matmul FLOP/s that the pack achieves
(training FLOPs = 6 x parameters x samples, Kaplan et al. 2020).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine_line  # noqa: E402

from paretolab.orchestrator.grid import expand  # noqa: E402
from paretolab.spec import parse_yaml  # noqa: E402
from paretolab.workers.packed import train_pack  # noqa: E402
from paretolab.workers.train import train  # noqa: E402
from paretolab.workers.trial import Assignment  # noqa: E402

SPEC = """\
sweep: packing
task: sparse_parity
task_args: {{n: 50, k: 3, train_size: 1000}}
model: mlp
model_args: {{width: {width}}}
fixed: {{lr: 0.1, batch_size: 32}}
seeds: {seeds}
max_steps: {steps}
eval: {{every: {steps}, test_size: 1000}}
success: {{metric: test_error, op: "<=", value: -1}}
"""


def matmul_flops() -> float:
    """Measured fp32 matmul FLOP/s of one thread: the best of a few 512 x 512 products."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = 0.0
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        best = max(best, 10 * 2 * 512**3 / (time.perf_counter() - start))
    return best


def run_solo(trials) -> float:
    start = time.perf_counter()
    for t in trials:
        for _ in train(t, 1):
            pass
    return time.perf_counter() - start


def run_pack(trials) -> float:
    start = time.perf_counter()
    for _ in train_pack([Assignment(t, 1) for t in trials]):
        pass
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--widths", default="100,1000")
    p.add_argument("--packs", default="8,64,256")
    p.add_argument("--solo-trials", type=int, default=4, help="solo trials timed (their mean is used)")
    a = p.parse_args()
    torch.set_num_threads(1)
    peak = matmul_flops()
    print(machine_line())
    print(f"one-thread fp32 matmul: {peak / 1e9:.1f} GFLOP/s (512 x 512)")
    print(f"{'width':>6}{'pack':>6}{'trials/hour':>14}{'speed-up':>10}{'of matmul peak':>16}")
    for width in (int(w) for w in a.widths.split(",")):
        packs = [int(x) for x in a.packs.split(",")]
        trials = list(expand(parse_yaml(SPEC.format(width=width, seeds=max(packs + [a.solo_trials]), steps=a.steps))))
        n_params = width * 52 + 1
        solo_s = run_solo(trials[: a.solo_trials]) / a.solo_trials
        flops = 6 * n_params * 32 * a.steps
        print(f"{width:>6}{1:>6}{3600 / solo_s:>14.0f}{1.0:>9.1f}x{flops / solo_s / peak:>15.1%}")
        for P in packs:
            pack_s = run_pack(trials[:P])
            print(f"{width:>6}{P:>6}{3600 * P / pack_s:>14.0f}{solo_s * P / pack_s:>9.1f}x{P * flops / pack_s / peak:>15.1%}")


if __name__ == "__main__":
    main()

"""Packed training against one trial at a time, in one process on this machine.

    python benchmarks/packing.py [--steps 2000] [--widths 100,1000] [--packs 8,64,256]
    python benchmarks/packing.py --model transformer [--steps 200] [--widths 16,32] [--length 16,64] [--packs 4,16,64]
    python benchmarks/packing.py --model lstm [--steps 200] [--widths 16,128] [--length 16,64] [--packs 4,16,64]
    python benchmarks/packing.py --project examples/parity_frontier.yaml [--device cuda]

`mlp` (the default): offline (50, 3)-sparse parity, training set 1000, batch 32, SGD. `transformer`
(1 layer of width `--widths`, 2 heads) and `lstm` (1 layer, hidden `--widths`): online flip-flop of
each `--length`, batch 32, AdamW. `--steps` steps, evaluation only at the start and the end (so the
figures are training throughput). Solo: `workers.train.train`, one trial after another. Packed:
`workers.packed.train_pack` on packs of P trials (different seeds). Both on one torch thread, as a
worker with `resources.cpu: 1` runs, on `--device` (a GPU when one is visible, else the CPU). Prints trials per hour, the speed-up, and the fraction of this
machine's measured fp32 matmul FLOP/s that the pack achieves (training FLOPs = 6 x parameters x
tokens, Kaplan et al. 2020).

`--project SPEC`: the device-hours a sweep of MLP trials needs with packing, printed with its
arithmetic. For each model width of the spec's grid, one pack of `pack_size: auto` members (on
this device) of that width, its first trials in grid order, trains one evaluation period of the
spec (`eval.every` steps, then an evaluation), timed from the first evaluation on (set-up left out);
its member-steps per second give the hours of that width's trials at `max_steps` each. The sum is
an upper bound (trials that reach success stop early) for one worker on the device.
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
from paretolab.tasks.registry import tasks  # noqa: E402
from paretolab.models.registry import models  # noqa: E402
from paretolab.workers.packed import train_pack  # noqa: E402
from paretolab.workers.train import train  # noqa: E402
from paretolab.vocabulary.trial import Assignment  # noqa: E402

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

SEQUENCE_SPEC = """\
sweep: packing
task: flipflop
task_args: {{length: {length}}}
model: {model}
model_args: {model_args}
fixed: {{lr: 0.001, batch_size: 32, optimizer: adamw, weight_decay: 0.1}}
seeds: {seeds}
max_steps: {steps}
eval: {{every: {steps}, test_size: 64}}
success: {{metric: test_error, op: "<=", value: -1}}
"""
MODEL_ARGS = {"transformer": "{{n_layers: 1, d_model: {width}, n_heads: 2}}", "lstm": "{{n_layers: 1, hidden: {width}}}"}


def cases(a, seeds: int) -> list[tuple[str, str]]:
    """(label, spec) per benchmarked shape."""
    if a.model == "mlp":
        return [(f"width {w}", SPEC.format(width=w, seeds=seeds, steps=a.steps)) for w in a.widths.split(",")]
    return [(f"width {w}, T {T}", SEQUENCE_SPEC.format(
                length=T, model=a.model, model_args=MODEL_ARGS[a.model].format(width=w), seeds=seeds, steps=a.steps))
            for w in a.widths.split(",") for T in a.length.split(",")]


def n_params_and_tokens(trial) -> tuple[int, int]:
    io = tasks()[trial.task].io(trial.task_args)
    n_params = models()[trial.model].param_count(trial.model_args, io)
    return n_params, (io.length - 1 if io.kind == "sequence" else 1)  # flip-flop reads T - 1 tokens


def matmul_flops(device: str) -> float:
    """Measured fp32 matmul FLOP/s of one thread (CPU) or of the GPU: the best of a few n x n products
    (n = 512 on a CPU, 4096 on a GPU)."""
    n = 4096 if device.startswith("cuda") else 512
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = 0.0
    for _ in range(20):
        sync(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = max(best, 10 * 2 * n**3 / (time.perf_counter() - start))
    return best


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_solo(trials, device: str) -> float:
    start = time.perf_counter()
    for t in trials:
        for _ in train(t, 1, device):
            pass
    sync(device)
    return time.perf_counter() - start


def run_pack(trials, device: str) -> float:
    start = time.perf_counter()
    for _ in train_pack([Assignment(t, 1) for t in trials], device):
        pass
    sync(device)
    return time.perf_counter() - start


def period_rate(trials, steps: int, device: str) -> float:
    """Member-steps per second of `trials` (one pack, or one trial alone) over `steps` steps and the
    evaluation that ends them, timed from the first evaluation on."""
    items = train_pack([Assignment(t, 1) for t in trials], device) if len(trials) > 1 else train(trials[0], 1, device)
    start = None
    for _ in items:
        if start is None:
            start = time.perf_counter()
    sync(device)
    return len(trials) * steps / (time.perf_counter() - start)


def project(spec_path: str, device: str) -> None:
    """Print the device-hours of the MLP sweep at `spec_path` under packing, with the arithmetic."""
    import dataclasses
    from collections import defaultdict

    from paretolab.spec import load_spec
    from paretolab.workers.packed import pack_size_for

    sweep = load_spec(spec_path)
    by_width = defaultdict(list)
    for t in expand(sweep):
        by_width[t.model_args.width].append(t)
    total_h = 0.0
    steps = sweep.eval.every
    print(f"projection of {spec_path} on {device}: {sum(map(len, by_width.values())):,} trials, "
          f"at most {sweep.max_steps:,} steps each; per width one pack of `auto` size timed over {steps} steps "
          f"and an evaluation on {sweep.eval.test_size:,} points")
    print(f"{'width':>7}{'trials':>8}{'pack':>6}{'member-steps/s':>16}{'hours':>10}   arithmetic")
    for width, trials in sorted(by_width.items()):
        P = min(len(trials), pack_size_for(trials[0], device, None))
        short = [dataclasses.replace(t, max_steps=steps, eval=dataclasses.replace(t.eval, every=steps))
                 for t in trials[:P]]
        rate = period_rate(short, steps, device)
        hours = len(trials) * sweep.max_steps / rate / 3600
        total_h += hours
        print(f"{width:>7}{len(trials):>8}{P:>6}{rate:>16,.0f}{hours:>10.2f}   "
              f"{len(trials)} x {sweep.max_steps:,} / {rate:,.0f} / 3600")
    print(f"total: {total_h:,.1f} {device.split(':')[0].upper()}-hours with one worker "
          f"(an upper bound: every trial runs all {sweep.max_steps:,} steps and its evaluations)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("mlp", "transformer", "lstm"), default="mlp")
    p.add_argument("--steps", type=int, default=None, help="default: 2000 for mlp, 200 for the sequence models")
    p.add_argument("--widths", default=None, help="MLP width, d_model or LSTM hidden (default 100,1000 / 16,32 / 16,128)")
    p.add_argument("--length", default="16,64", help="flip-flop lengths T (sequence models)")
    p.add_argument("--packs", default=None, help="default: 8,64,256 for mlp, 4,16,64 for the sequence models")
    p.add_argument("--solo-trials", type=int, default=4, help="solo trials timed (their mean is used)")
    p.add_argument("--project", default=None, metavar="SPEC",
                   help="print the device-hours of an MLP sweep spec under packing, with the arithmetic")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda[:i] (default: cuda when a GPU is visible)")
    a = p.parse_args()
    if a.project:
        torch.set_num_threads(1)
        print(machine_line())
        project(a.project, a.device)
        return
    sequence = a.model != "mlp"
    a.steps = a.steps or (200 if sequence else 2000)
    a.widths = a.widths or {"mlp": "100,1000", "transformer": "16,32", "lstm": "16,128"}[a.model]
    a.packs = a.packs or ("4,16,64" if sequence else "8,64,256")
    torch.set_num_threads(1)
    peak = matmul_flops(a.device)
    print(machine_line())
    if a.device.startswith("cuda"):
        print(f"device {a.device}: {torch.cuda.get_device_name(a.device)}; fp32 matmul {peak / 1e12:.1f} TFLOP/s (4096 x 4096)")
    else:
        print(f"one-thread fp32 matmul: {peak / 1e9:.1f} GFLOP/s (512 x 512)")
    print(f"model {a.model}, {a.steps} steps")
    print(f"{'case':>16}{'params':>9}{'pack':>6}{'trials/hour':>14}{'speed-up':>10}{'of matmul peak':>16}")
    packs = [int(x) for x in a.packs.split(",")]
    for label, spec in cases(a, seeds=max(packs + [a.solo_trials])):
        trials = list(expand(parse_yaml(spec)))
        n_params, tokens = n_params_and_tokens(trials[0])
        solo_s = run_solo(trials[: a.solo_trials], a.device) / a.solo_trials
        flops = 6 * n_params * tokens * 32 * a.steps
        print(f"{label:>16}{n_params:>9}{1:>6}{3600 / solo_s:>14.0f}{1.0:>9.1f}x{flops / solo_s / peak:>15.1%}")
        for P in packs:
            pack_s = run_pack(trials[:P], a.device)
            print(f"{label:>16}{n_params:>9}{P:>6}{3600 * P / pack_s:>14.0f}{solo_s * P / pack_s:>9.1f}x"
                  f"{P * flops / pack_s / peak:>15.1%}")


if __name__ == "__main__":
    main()

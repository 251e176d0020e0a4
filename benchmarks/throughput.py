"""Training throughput of each built-in model on one CPU thread, and its fraction of measured matmul FLOP/s.

    python benchmarks/throughput.py [--steps 200] [--mlp-steps 4000] [--repeats 2]

Sizes (batch 32 everywhere; each trial is built from a YAML spec by `parse_yaml` + `expand` and run
by `workers.train.train`, evaluation only at the start and the end, success unreachable):

  mlp         (50, 3)-sparse parity, online (a fresh batch every step), widths 100 and 1000, SGD lr 0.1
  lstm        flip-flop FFL(0.8), length T = 64, 1 layer, hidden 128, AdamW lr 1e-3
  transformer flip-flop FFL(0.8), length T = 64, 2 layers, d_model 128, 4 heads, MLP 4x, AdamW lr 1e-3

A flip-flop model reads T - 1 = 63 tokens per sequence; tokens/s counts those (samples/s x 63), and
an MLP sample is one token. Steady state: each model is run for W = max(10, steps // 10) steps and
for W + steps steps, and the times from the end of the step-0 evaluation to the end of the run are
subtracted, which removes the setup, both evaluations and the first W steps (the best of `--repeats`
runs of each is used). Training FLOP/s = 6 x parameters x tokens/s (Kaplan et al. 2020; the
`flops_per_sample` that `train` records). It counts every parameter, embeddings included, and
leaves out attention's T-dependent score FLOPs: about right for the MLP and the LSTM, a few percent
either way for the Transformer.

Two matmul peaks, both one thread, fp32, best of repeated 512 x 512 products: `a @ b` (torch's
BLAS, MKL; the kernel behind the MLP's and the Transformer's matmuls; the figure packing.py uses)
and oneDNN's linear on `to_mkldnn()` tensors (the library behind `nn.LSTM` on CPU). On an AMD CPU
with AVX-512 the two can differ by 2x, so both fractions are printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from _common import busy_warning, machine_line  # noqa: E402
from packing import matmul_flops  # noqa: E402

from paretolab.orchestrator.grid import expand  # noqa: E402
from paretolab.spec import parse_yaml  # noqa: E402
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN  # noqa: E402
from paretolab.workers.train import train  # noqa: E402

SPEC = """\
sweep: throughput
task: {task}
task_args: {task_args}
model: {model}
model_args: {model_args}
fixed: {fixed}
max_steps: {steps}
eval: {{every: {steps}, test_size: 100}}
success: {{metric: test_error, op: "<=", value: -1}}
"""

PARITY = "{n: 50, k: 3}"
FLIPFLOP = "{length: 64, p_ignore: 0.8}"
SGD = "{lr: 0.1, batch_size: 32}"
ADAMW = "{lr: 0.001, batch_size: 32, optimizer: adamw}"
# (label, task, task_args, model, model_args, fixed)
CASES = [
    ("mlp w=100", "sparse_parity", PARITY, "mlp", "{width: 100}", SGD),
    ("mlp w=1000", "sparse_parity", PARITY, "mlp", "{width: 1000}", SGD),
    ("lstm h=128", "flipflop", FLIPFLOP, "lstm", "{hidden: 128}", ADAMW),
    ("transformer 2x128", "flipflop", FLIPFLOP, "transformer", "{n_layers: 2, d_model: 128, n_heads: 4}", ADAMW),
]


def onednn_matmul_flops() -> float | None:
    """Measured fp32 FLOP/s of oneDNN's linear on one thread (512 x 512), or None without oneDNN."""
    try:
        a, b = torch.randn(512, 512).to_mkldnn(), torch.randn(512, 512).to_mkldnn()
        F.linear(a, b)
    except (RuntimeError, AttributeError):
        return None
    best = 0.0
    for _ in range(20):
        start = time.perf_counter()
        for _ in range(10):
            F.linear(a, b)
        best = max(best, 10 * 2 * 512**3 / (time.perf_counter() - start))
    return best


def trial(case, steps: int):
    _, task, task_args, model, model_args, fixed = case
    text = SPEC.format(task=task, task_args=task_args, model=model, model_args=model_args, fixed=fixed, steps=steps)
    (t,) = expand(parse_yaml(text))
    return t


def timed(t):
    """Seconds from the end of the step-0 evaluation to the end of the run, and the `TrialResult`."""
    gen = train(t, 1)
    next(gen)  # setup and the step-0 evaluation are not timed
    start = time.perf_counter()
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return time.perf_counter() - start, stop.value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="timed steps of the sequence models")
    p.add_argument("--mlp-steps", type=int, default=4000, help="timed steps of the MLPs (much cheaper per step)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each length; the fastest is used")
    a = p.parse_args()
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    torch.set_num_threads(1)
    peak_mkl, peak_dnn = matmul_flops(), onednn_matmul_flops()
    print(f"one-thread fp32 matmul, 512 x 512: torch @ (MKL) {peak_mkl / 1e9:.1f} GFLOP/s, "
          f"oneDNN linear {'absent' if peak_dnn is None else f'{peak_dnn / 1e9:.1f} GFLOP/s'}")
    print(f"{'model':<18}{'params':>9}{'tok/sample':>11}{'steps':>7}{'ms/step':>9}{'samples/s':>11}"
          f"{'tokens/s':>11}{'GFLOP/s':>9}{'of @':>7}{'of oneDNN':>10}")
    total_start = time.perf_counter()
    for case in CASES:
        steps = a.mlp_steps if case[3] == "mlp" else a.steps
        warm = max(10, steps // 10)
        short, long = trial(case, warm), trial(case, warm + steps)
        short_s = long_s = float("inf")
        for _ in range(max(1, a.repeats)):
            short_s = min(short_s, timed(short)[0])
            s, result = timed(long)
            long_s = min(long_s, s)
        step_s = (long_s - short_s) / steps
        B = long.train.batch_size
        tokens = round(result.flops_per_sample / (FLOPS_PER_PARAM_PER_TOKEN * result.n_params))
        flops = result.flops_per_sample * B / step_s
        dnn = "" if peak_dnn is None else f"{flops / peak_dnn:.0%}"
        print(f"{case[0]:<18}{result.n_params:>9}{tokens:>11}{steps:>7}{step_s * 1e3:>9.3f}{B / step_s:>11.0f}"
              f"{B * tokens / step_s:>11.0f}{flops / 1e9:>9.1f}{flops / peak_mkl:>7.0%}{dnn:>10}")
    print(f"total {time.perf_counter() - total_start:.0f} s")


if __name__ == "__main__":
    main()

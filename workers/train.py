"""The training loop of one trial: build data, build model, step, evaluate, emit metrics, stop.

`train(trial, attempt)` is a generator: it yields a `MetricRow` at every evaluation and returns the
`TrialResult`. Everything random comes from generators derived from the trial seed, so the same
trial gives the same curve on every run on CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator

import torch

from paretolab.workers.attempt import Attempt, build, evaluation_due
from paretolab.workers.schedule import lr_factor
from paretolab.vocabulary.trial import Assignment, MetricRow, Pruning, TrainArgs, TrialConfig, TrialResult


def train(trial: TrialConfig, attempt: int, device: str = "cpu", prune: Pruning | None = None
          ) -> Generator[MetricRow, None, TrialResult]:
    """Run one attempt of `trial`, yielding its metric rows and returning how it ended (`pruned`
    when `prune` finds it hopeless at an evaluation)."""
    start = time.perf_counter()
    task, model = build(trial, device)
    sequence = task.io(trial.task_args).kind == "sequence"
    opt = _optimizer(model.params, trial.train)
    B, loss_kind = trial.train.batch_size, trial.train.loss
    follow = Attempt(Assignment(trial, attempt, prune), start, model.n_params)

    step, loss_count, tokens = 0, 0, 1
    loss_sum, error_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    while True:
        if evaluation_due(step, trial):
            row, result = follow.evaluate(step, task, model.forward, loss_sum, error_sum, loss_count, tokens)
            loss_count = 0
            loss_sum, error_sum = torch.zeros((), device=device), torch.zeros((), device=device)
            yield row
            if result is not None:
                return result
        x, y = task.train_batch(B)
        tokens = x.shape[-1] if sequence else 1
        # The schedule is written into every parameter group at every step, rather than kept by a
        # torch lr_scheduler: `lr_factor` is stateless and is the one definition packed training shares.
        lr = trial.train.lr * lr_factor(step, trial.max_steps, trial.train.schedule, trial.train.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(trial.train.precision, device):
            out = model.forward(x)
            loss = task.loss(out, y, loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        error_sum += task.error(out.detach(), y)
        loss_count += 1
        step += 1


def autocast(precision: str, device: str):
    """The context of a training step's forward pass and loss: bfloat16 autocast for `bf16` on a
    CUDA device, nothing otherwise. `bf16` is a GPU throughput setting: on a CPU the same trial
    trains in fp32, so a sweep meant for GPUs can be tried on a laptop unchanged."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if autocasts(precision, device) else contextlib.nullcontext()


def autocasts(precision: str, device: str) -> bool:
    """Whether `autocast(precision, device)` changes anything (bf16 on a CUDA device)."""
    return precision == "bf16" and torch.device(device).type == "cuda"


@contextlib.contextmanager
def matmul_precision(precision: str, device: str):
    """The context a trial (or a pack) trains in: for `tf32` on a CUDA device, TensorFloat-32 in
    CUDA's fp32 matmuls and in cuDNN (process-wide settings, restored on exit: a worker trains one
    unit at a time); nothing otherwise. Off by default, for results equal to fp32's up to rounding."""
    if precision != "tf32" or torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.fp32_precision
    torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.fp32_precision = "tf32"
    try:
        yield
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.fp32_precision = saved


def _optimizer(params: list[torch.Tensor], args: TrainArgs) -> torch.optim.Optimizer:
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)

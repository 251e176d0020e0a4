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

from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.workers.models import models
from paretolab.workers.outcome import Outcome
from paretolab.workers.schedule import lr_factor
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN
from paretolab.vocabulary.trial import MetricRow, Pruning, TrainArgs, TrialConfig, TrialResult

def train(trial: TrialConfig, attempt: int, device: str = "cpu", prune: Pruning | None = None
          ) -> Generator[MetricRow, None, TrialResult]:
    """Run one attempt of `trial`, yielding its metric rows and returning how it ended (`pruned`
    when `prune` finds it hopeless at an evaluation)."""
    start = time.perf_counter()
    task_cls = tasks()[trial.task]
    task = task_cls(trial.task_args, trial.seed, trial.eval.test_size, device)
    io = task_cls.io(trial.task_args)
    model = models()[trial.model](trial.model_args, io, generator(trial.seed, "init", device), device)
    tokens = 1
    opt = _optimizer(model.params, trial.train)
    B, loss_kind, success = trial.train.batch_size, trial.train.loss, trial.success

    step, loss_count = 0, 0
    loss_sum, error_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    outcome = Outcome(success, prune, trial.max_steps)
    while True:
        if step % trial.eval.every == 0 or step == trial.max_steps:
            # train_loss / train_error: means over the minibatches since the previous evaluation
            train_loss = float(loss_sum) / loss_count if loss_count else None
            train_error = float(error_sum) / loss_count if loss_count else None
            metrics = {"train_loss": train_loss, "train_error": train_error,
                       **task.evaluate(model.forward, loss_kind)}
            loss_count = 0
            loss_sum, error_sum = torch.zeros((), device=device), torch.zeros((), device=device)
            yield MetricRow(trial.trial_id, attempt, step, step * B, time.perf_counter() - start, metrics)
            # (weights can turn NaN in the last step while its training loss was still finite)
            if status := outcome.see(step, step * B, metrics):
                return _result(trial, attempt, status, step, start, outcome.first_success, model.n_params, tokens, metrics)
        x, y = task.train_batch(B)
        tokens = x.shape[1] if io.kind == "sequence" else 1
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


def _result(trial, attempt, status, step, start, first_success, n_params, tokens, metrics) -> TrialResult:
    """The result of an attempt that ended; `tokens` is the number of tokens in one example."""
    B = trial.train.batch_size
    per_sample = float(FLOPS_PER_PARAM_PER_TOKEN * n_params * tokens)
    to_success = {}
    if first_success is not None:
        to_success = {
            "steps_to_success": first_success,
            "samples_to_success": first_success * B,
            "flops_to_success": per_sample * first_success * B,
        }
    return TrialResult(
        trial_id=trial.trial_id, attempt=attempt, status=status, steps=step, samples=step * B,
        wall_s=time.perf_counter() - start, success=first_success is not None,
        n_params=n_params, flops_per_sample=per_sample, final=metrics, **to_success,
    )


def failed(trial: TrialConfig, attempt: int, error: str, wall_s: float = 0.0) -> TrialResult:
    """The result of an attempt that raised or whose worker died."""
    return TrialResult(trial.trial_id, attempt, "failed", 0, 0, wall_s, False, error=error)

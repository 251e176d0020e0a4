"""The training loop of one trial: build data, build model, step, evaluate, emit metrics, stop.

`train(trial, attempt)` is a generator: it yields a `MetricRow` at every evaluation and returns the
`TrialResult`. Everything random comes from generators derived from the trial seed, so the same
trial gives the same curve on every run on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator

import torch

from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.workers.models import models
from paretolab.workers.trial import MetricRow, TrainArgs, TrialConfig, TrialResult

# Training FLOPs per example: forward + backward is about 6 x parameters (Kaplan et al. 2020,
# "Scaling Laws for Neural Language Models", Sec. 2.1: C = 6 N per token).
FLOPS_PER_PARAM_PER_SAMPLE = 6


def train(trial: TrialConfig, attempt: int, device: str = "cpu") -> Generator[MetricRow, None, TrialResult]:
    """Run one attempt of `trial`, yielding its metric rows and returning how it ended."""
    start = time.perf_counter()
    task_cls = tasks()[trial.task]
    task = task_cls(trial.task_args, trial.seed, trial.eval.test_size, device)
    model = models()[trial.model](trial.model_args, task_cls.io(trial.task_args), generator(trial.seed, "init", device), device)
    opt = _optimizer(model.params, trial.train)
    B, loss_kind, success = trial.train.batch_size, trial.train.loss, trial.success

    step, loss_count = 0, 0
    loss_sum, error_sum = torch.zeros((), device=device), torch.zeros((), device=device)
    first_success: int | None = None
    metrics: dict[str, float | None] = {}
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
            # Weights can turn NaN in the last step while its training loss was still finite.
            if any(v is not None and not math.isfinite(v) for v in metrics.values()):
                return _result(trial, attempt, "diverged", step, start, first_success, model.n_params, metrics)
            if first_success is None and success.holds(metrics):
                first_success = step
            if step == trial.max_steps or (first_success is not None and success.stop_on_success):
                return _result(trial, attempt, "finished", step, start, first_success, model.n_params, metrics)
        x, y = task.train_batch(B)
        out = model.forward(x)
        loss = task.loss(out, y, loss_kind)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        error_sum += task.error(out.detach(), y)
        loss_count += 1
        step += 1


def _optimizer(params: list[torch.Tensor], args: TrainArgs) -> torch.optim.Optimizer:
    if args.optimizer == "adam":
        return torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    if args.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    return torch.optim.SGD(params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)


def _result(trial, attempt, status, step, start, first_success, n_params, metrics) -> TrialResult:
    B = trial.train.batch_size
    to_success = {}
    if first_success is not None:
        to_success = {
            "steps_to_success": first_success,
            "samples_to_success": first_success * B,
            "flops_to_success": float(FLOPS_PER_PARAM_PER_SAMPLE * n_params * first_success * B),
        }
    return TrialResult(
        trial_id=trial.trial_id, attempt=attempt, status=status, steps=step, samples=step * B,
        wall_s=time.perf_counter() - start, success=first_success is not None, n_params=n_params,
        final=metrics, **to_success,
    )


def failed(trial: TrialConfig, attempt: int, error: str, wall_s: float = 0.0) -> TrialResult:
    """The result of an attempt that raised or whose worker died."""
    return TrialResult(trial.trial_id, attempt, "failed", 0, 0, wall_s, False, error=error)

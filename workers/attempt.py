"""One attempt of a built-in trial, as the training loop follows it: its evaluations, its end, its result.

Solo training (`workers.train`, the reference) and packed training (`workers.packed`, the default)
hand every evaluation of a trial to its `Attempt`: it writes the metric row, asks the `Outcome`
whether the attempt ends there and, if it does, writes the `TrialResult`. A trial that raises ends
as `failed(..., error_text(e))`. So a built-in trial's rows, result and error read the same
whichever path trains it.
"""

from __future__ import annotations

import time
import traceback

import torch

from paretolab.tasks.base import Task
from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.models.base import Model
from paretolab.models.registry import models
from paretolab.workers.outcome import Outcome
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN
from paretolab.vocabulary.trial import Assignment, MetricRow, TrialConfig, TrialResult


def build(trial: TrialConfig, device: str) -> tuple[Task, Model]:
    """The task and the model of `trial` on `device`, each drawn from the trial's seed alone."""
    task_cls, model_cls = tasks()[trial.task], models()[trial.model]
    task = task_cls(trial.task_args, trial.seed, trial.eval.test_size, device)
    model = model_cls(trial.model_args, task_cls.io(trial.task_args), generator(trial.seed, "init", device), device)
    return task, model


def evaluation_due(step: int, trial: TrialConfig) -> bool:
    """Whether the loop evaluates before update `step`: every `eval.every` steps and at `max_steps`."""
    return step % trial.eval.every == 0 or step == trial.max_steps


class Attempt:
    """The bookkeeping of one attempt trained by the built-in loop since `start` (`time.perf_counter`)
    by a model of `n_params` parameters."""

    __slots__ = ("attempt", "n_params", "outcome", "start", "trial")

    def __init__(self, a: Assignment, start: float, n_params: int):
        self.trial, self.attempt, self.start, self.n_params = a.trial, a.attempt, start, n_params
        self.outcome = Outcome(a.trial.success, a.prune, a.trial.max_steps)

    def evaluate(self, step: int, task, forward, loss_sum: torch.Tensor, error_sum: torch.Tensor, count: int,
                 tokens: int) -> tuple[MetricRow, TrialResult | None]:
        """The metric row of the evaluation before update `step`, and the result if the attempt ends there.

        Args:
            step: updates taken. task: the trial's `Task`. forward: the model's forward function.
            loss_sum, error_sum: sums of the minibatch losses and errors since the previous evaluation,
                over `count` minibatches (`train_loss`, `train_error` are their means).
            tokens: tokens in one example (1 for a vector task), for the FLOPs per sample.
        """
        B = self.trial.train.batch_size
        metrics = {"train_loss": float(loss_sum) / count if count else None,
                   "train_error": float(error_sum) / count if count else None,
                   **task.evaluate(forward, self.trial.train.loss)}
        row = MetricRow(self.trial.trial_id, self.attempt, step, step * B, time.perf_counter() - self.start, metrics)
        # (weights can turn NaN in the last step while its training loss was still finite)
        status = self.outcome.see(step, step * B, metrics)
        return row, (self._result(status, step, tokens, metrics) if status else None)

    def failed(self, e: Exception) -> TrialResult:
        """The result of this attempt raising `e`."""
        return failed(self.trial, self.attempt, error_text(e), time.perf_counter() - self.start)

    def _result(self, status: str, step: int, tokens: int, metrics: dict) -> TrialResult:
        B, first_success = self.trial.train.batch_size, self.outcome.first_success
        per_sample = float(FLOPS_PER_PARAM_PER_TOKEN * self.n_params * tokens)
        to_success = {}
        if first_success is not None:
            to_success = {
                "steps_to_success": first_success,
                "samples_to_success": first_success * B,
                "flops_to_success": per_sample * first_success * B,
            }
        return TrialResult(
            trial_id=self.trial.trial_id, attempt=self.attempt, status=status, steps=step, samples=step * B,
            wall_s=time.perf_counter() - self.start, success=first_success is not None,
            stopped_at_success=self.outcome.stopped_at_success, n_params=self.n_params,
            flops_per_sample=per_sample, final=metrics, **to_success,
        )


def failed(trial: TrialConfig, attempt: int, error: str, wall_s: float = 0.0) -> TrialResult:
    """The result of an attempt that raised or whose worker died."""
    return TrialResult(trial.trial_id, attempt, "failed", 0, 0, wall_s, False, error=error)


def error_text(e: Exception) -> str:
    """The error a failed trial records: the exception's type and message, without the traceback."""
    return "".join(traceback.format_exception_only(e)).strip()

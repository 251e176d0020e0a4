"""What crosses between the driver and a worker: a trial to run, metric rows and the trial's result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from paretolab.vocabulary.errors import shown
from paretolab.vocabulary.success import Success


@dataclass(frozen=True)
class TrainArgs:
    """Optimization hyperparameters of one trial.

    lr: the peak learning rate; schedule and warmup_steps shape it over the run (see
    `workers.schedule.lr_factor`): a linear warmup from 0 over the first `warmup_steps` steps, then
    `constant`, or a `linear` or `cosine` decay to 0 at `max_steps`. precision: `bf16` runs each
    training step's forward pass and loss under bfloat16 autocast on CUDA devices; `tf32` lets
    CUDA's fp32 matmuls and cuDNN use TensorFloat-32 while the trial trains; on a CPU both are fp32
    (the weights, the optimizer and evaluation are fp32 on every device).
    """

    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 0.0
    momentum: float = 0.0
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    loss: str = "hinge"  # the task's first loss when not given (see orchestrator.grid.expand)
    schedule: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    precision: Literal["fp32", "bf16", "tf32"] = "fp32"

    def check(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"schedule must be one of constant, linear, cosine; got {shown(self.schedule)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.precision not in ("fp32", "bf16", "tf32"):
            raise ValueError(f"precision must be fp32, bf16 or tf32, got {shown(self.precision)}")


@dataclass(frozen=True)
class EvalArgs:
    """Evaluate every `every` steps (and at step 0 and the last step) on `test_size` held-out points."""

    every: int = 100
    test_size: int = 1000


@dataclass(frozen=True)
class Code:
    """A researcher's own training code, the trainable of a trial that is not built in.

    kind: `function` (called as `fn(config, ctx)`) or `command` (a process reporting JSON lines).
    name: how the spec names it: `train.py:main`, `mypkg.train:main`, or the command as written.
    command: the command's arguments, with `{parameter}` placeholders (a command only).
    root: the folder the code is found in on the driver (the spec's folder); what a cluster's
        workers receive as their working directory.
    shipped: the workers find the code in their working directory (Ray's runtime environment
        shipped `root` there), not at `root`.
    digest: the hash of the code's files (`paretolab.user_code.code_digest`); with `version`, part
        of every trial's id, so that changed code never reuses old results.
    timeout_s: a command running longer is ended and its trial recorded as failed.
    checkpoints: where trials keep their checkpoints: a folder or a URI, one sub-folder per trial.
    keep_checkpoints: keep a trial's checkpoint once it has ended (dropped by default).
    vectorized: the `module:function` (or `file.py:function`) that trains a list of configs at
        once, if the code declares one: what packing uses (`workers.vectorized`).
    pack_by: the parameters that must be equal among the members of one pack.
    """

    kind: Literal["function", "command"]
    name: str
    command: tuple[str, ...] = ()
    root: str = ""
    shipped: bool = False
    digest: str = ""
    version: str | None = None
    timeout_s: float | None = None
    checkpoints: str = ""
    keep_checkpoints: bool = False
    vectorized: str | None = None
    pack_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class TrialConfig:
    """Everything that determines one training run; `trial_id` is a hash of all the other fields
    (`orchestrator.identity.point_content`: arguments at their defaults are left out of it).

    A built-in trial has a task, a model and their arguments; a trial of the researcher's own code
    (`code`) has `params`, the parameters its config holds, and None for the built-in fields
    (`max_steps` is None unless the spec sets it).
    """

    trial_id: str
    task: str | None
    task_args: object
    model: str | None
    model_args: object
    train: TrainArgs | None
    seed: int
    max_steps: int | None
    eval: EvalArgs | None
    success: Success
    code: Code | None = None
    params: tuple[tuple[str, object], ...] = ()

    @property
    def kind(self) -> str:
        """How the trial trains: `builtin`, `function` or `command` (`workers.runners`)."""
        return "builtin" if self.code is None else self.code.kind

    def config(self) -> dict[str, object]:
        """The trial's parameters as its code receives them: every parameter of the spec's grid,
        zip and fixed values, `max_steps` when set, and `seed`."""
        if self.code is None:
            return self.columns()
        cols = dict(self.params)
        if self.max_steps is not None:
            cols["max_steps"] = self.max_steps
        cols["seed"] = self.seed
        return cols

    def columns(self) -> dict[str, object]:
        """The flat config columns of this trial in the `trials` table."""
        if self.code is not None:
            return {"trainable": self.code.name, **self.config()}
        cols: dict[str, object] = {"task": self.task, "model": self.model}
        for part in (self.task_args, self.model_args, self.train):
            cols.update(dataclasses.asdict(part))
        cols["seed"] = self.seed
        cols["max_steps"] = self.max_steps
        return cols


@dataclass(frozen=True)
class Pruning:
    """Early stopping of hopeless trials (an adaptive search's pruner; never part of a trial's id).

    At each evaluation step listed in `thresholds`, a trial that has not succeeded yet and whose
    `metric` is worse than the step's threshold (above it when `lower_is_better`) ends as `pruned`.
    """

    metric: str
    thresholds: tuple[tuple[int, float], ...]
    lower_is_better: bool = True

    def hopeless(self, step: int, metrics: dict[str, float | None]) -> bool:
        bar = dict(self.thresholds).get(step)
        value = metrics.get(self.metric)
        if bar is None or value is None:
            return False
        return value > bar if self.lower_is_better else value < bar


@dataclass(frozen=True)
class Assignment:
    """A trial handed to a worker, with the number of this attempt (1 for the first), and the
    pruning rule it runs under, if any."""

    trial: TrialConfig
    attempt: int
    prune: Pruning | None = None


@dataclass(frozen=True)
class MetricRow:
    """One evaluation of one attempt: the step, samples seen, seconds since start, and the metrics."""

    trial_id: str
    attempt: int
    step: int
    samples: int
    wall_s: float
    values: dict[str, float | None]


Status = Literal["finished", "diverged", "failed", "pruned"]


@dataclass(frozen=True)
class TrialResult:
    """How an attempt ended. `*_to_success` are None when the success criterion never held.

    `final`: the metrics of its last evaluation (stored as `final_<metric>` columns). `stopped_at_success`:
    the attempt ended because its success criterion held under `stop_on_success` (`workers.outcome`),
    so `final` holds the first values past the threshold, not those of a run to `max_steps`.
    """

    trial_id: str
    attempt: int
    status: Status
    steps: int
    samples: int
    wall_s: float
    success: bool
    stopped_at_success: bool = False
    steps_to_success: int | None = None
    samples_to_success: int | None = None
    flops_to_success: float | None = None
    n_params: int | None = None
    flops_per_sample: float | None = None  # training FLOPs of one example (6 x params x tokens)
    final: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """What a worker streams back: metric rows and finished results since its previous report."""

    rows: list[MetricRow]
    results: list[TrialResult]
    pid: int
    node: str

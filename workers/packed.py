"""Packed training: trials of the same shape trained together as one vectorized model.

A pack stacks its members' weights along a leading axis and trains them with batched matmuls.
Each member keeps everything that makes it its own trial: its task object (its generators, its
hidden structure, its training set and test set), its initial weights (drawn exactly as a solo run
draws them), its learning rate, weight decay and momentum, its metric rows, its early stop. A
member that ends (success, `max_steps`, divergence) is dropped from the stacks at that evaluation,
so a heavy tail of slow members costs only what they use.

Members may differ in what `Task.pack_free` and `Model.pack_free` name (for sparse parity and the
MLP: seed, train_size, noise, init, sparsity) and in lr, weight_decay, momentum and the success
criterion; everything else must be equal (`pack_key`), the optimizer, the learning-rate schedule,
its warmup and the precision included: each member steps with its own lr times the pack's common
`lr_factor`, and the pack's forward pass runs under one autocast context. The optimizers (SGD,
Adam, AdamW) are torch.optim's updates written over stacked parameters, operation for operation, so
a member's step rounds as its solo step does; a member's curve equals its solo curve up to the
rounding of the forward and backward passes (batched and plain matmuls sum in different orders).

What a member's rows, end, result and error are is `workers.attempt`'s, as for a solo run; its
batches come from `workers.prefetch`; the model's side of a pack is `models.base.Pack`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator

import torch

from paretolab.tasks.registry import tasks
from paretolab.workers.attempt import Attempt, build, error_text, evaluation_due, failed
from paretolab.models.base import PackableModel
from paretolab.models.registry import models
from paretolab.workers.prefetch import PackBatches
from paretolab.workers.schedule import lr_factor
from paretolab.workers.train import autocast, autocasts
from paretolab.vocabulary.trial import Assignment, MetricRow, TrialResult

# `pack_size: auto` fills a pack up to this many parameters x tokens per example (1 for vector
# tasks): a step of a pack costs about members x parameters x tokens. On the 2-core CPU
# (benchmarks/packing.py) width-100 MLPs (5k parameters) gain 15-16x at packs of 64-256 while
# width-1000 ones (52k) gain 2.0x at 8, 1.3x at 64 and lose at 256: past ~5e5 parameters a pack's
# working set leaves the caches. For sequence models the forward and backward of a Transformer pack beat the
# solo models one after the other at width 16 and T = 16 (3.7k parameters x 15 tokens: 11.3 ms
# against 14.2 ms for 16 members) but lost at width 32 and T = 64 (15k x 63, over the budget alone:
# 84 ms against 67 ms), best of 5, one thread (models/transformer.py). Whole-run speed-ups of
# benchmarks/packing.py on the loaded machine were too noisy to calibrate more finely (README,
# Performance). On a GPU packs stay kernel-launch-bound far longer; 1e8 there is an estimate, not
# a measurement.
AUTO_PACK_PARAMS = {"cpu": 5 * 10**5, "cuda": 10**8}
MAX_AUTO_PACK = 256
PACK_OPTIMIZERS = ("sgd", "adam", "adamw")
# torch.optim.Adam's defaults, which the solo loop uses (workers/train.py sets neither)
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


def pack_key(trial) -> str | None:
    """Trials with equal keys can train in one pack; None if the trial cannot be packed."""
    task_cls, model_cls = tasks()[trial.task], models()[trial.model]
    if not issubclass(model_cls, PackableModel) or trial.train.optimizer not in PACK_OPTIMIZERS:
        return None
    fixed = {
        "task": trial.task, "model": trial.model, "max_steps": trial.max_steps, "eval": dataclasses.asdict(trial.eval),
        "task_args": {k: v for k, v in dataclasses.asdict(trial.task_args).items() if k not in task_cls.pack_free},
        "model_args": {k: v for k, v in dataclasses.asdict(trial.model_args).items() if k not in model_cls.pack_free},
        "batch_size": trial.train.batch_size, "loss": trial.train.loss, "optimizer": trial.train.optimizer,
        "schedule": trial.train.schedule, "warmup_steps": trial.train.warmup_steps,
        "precision": trial.train.precision,
    }
    return json.dumps(fixed, sort_keys=True)


def auto_pack_size(n_params: int, device: str = "cpu", tokens: int = 1) -> int:
    """Members per pack under `pack_size: auto` for a model of `n_params` parameters and examples of
    `tokens` tokens (`example_tokens`)."""
    budget = AUTO_PACK_PARAMS["cuda" if device.startswith("cuda") else "cpu"]
    return max(1, min(MAX_AUTO_PACK, budget // max(1, n_params * tokens)))


def pack_size_for(trial, device: str, pack_size: int | None) -> int:
    """Members per pack for packable trials like `trial`: `pack_size`, or under `auto` (None)
    `auto_pack_size` of its model's parameter count."""
    if pack_size is not None:
        return pack_size
    io = tasks()[trial.task].io(trial.task_args)
    return auto_pack_size(models()[trial.model].param_count(trial.model_args, io), device, example_tokens(io))


def example_tokens(io) -> int:
    """Tokens in one example of a task of shape `io` (`tasks.base.IO`): its maximum length for a
    sequence task, 1 for a vector task."""
    return (io.length or 1) if io.kind == "sequence" else 1


def train_pack(assignments: list[Assignment], device: str = "cpu") -> Iterator[MetricRow | TrialResult]:
    """Train `assignments` (equal `pack_key`) as one pack, yielding each member's metric rows and,
    as each member ends, its `TrialResult`."""
    start = time.perf_counter()
    members, task_objs, nets = [], [], []
    for a in assignments:
        try:
            task, net = build(a.trial, device)
        except Exception as e:  # this member cannot start; the others can
            yield failed(a.trial, a.attempt, error_text(e), time.perf_counter() - start)
            continue
        members.append(Attempt(a, start, net.n_params))
        task_objs.append(task)
        nets.append(net)
    if not members:
        return
    first = members[0].trial
    pack = type(nets[0]).stack(nets)
    opt = PackOptimizer(first.train.optimizer, pack.params, [m.trial.train for m in members], device)
    B, kind, max_steps = first.train.batch_size, first.train.loss, first.max_steps
    schedule, warmup_steps, precision = first.train.schedule, first.train.warmup_steps, first.train.precision
    sequence = task_objs[0].io(first.task_args).kind == "sequence"
    # a pack with its own backward (the MLP's) uses it in float32; under bf16 autocast, autograd
    by_hand = pack.own_backward and not autocasts(precision, device)
    batches = PackBatches(task_objs)
    step, count, tokens = 0, 0, 1
    loss_sum, error_sum = torch.zeros(len(members), device=device), torch.zeros(len(members), device=device)
    try:
        while members:
            if evaluation_due(step, first):
                keep = []
                for i, (m, task) in enumerate(zip(members, task_objs)):
                    row, result = m.evaluate(step, task, pack.member(i), loss_sum[i], error_sum[i], count, tokens)
                    yield row
                    if result is not None:
                        yield result
                    else:
                        keep.append(i)
                if len(keep) < len(members):
                    members, task_objs = [members[i] for i in keep], [task_objs[i] for i in keep]
                    if not members:
                        return
                    idx = torch.tensor(keep, device=device, dtype=torch.long)
                    pack.keep(idx)
                    opt.keep(idx)
                    batches.keep(idx)
                loss_sum, error_sum, count = torch.zeros(len(members), device=device), torch.zeros(len(members), device=device), 0
            X, Y = batches.next(B)
            tokens = X.shape[-1] if sequence else 1
            for p in pack.params:
                p.grad = None
            with autocast(precision, device):
                out = pack.forward_for_backward(X) if by_hand else pack.forward(X)
                losses = task_objs[0].packed_loss(out, Y, kind)
            losses.sum().backward()  # members share no weight, so each gets exactly its own gradient
            if by_hand:
                pack.backward(out.grad)
            with torch.no_grad():
                opt.step(pack.params, lr_factor(step, max_steps, schedule, warmup_steps))
                loss_sum += losses.detach()
                error_sum += task_objs[0].packed_error(out.detach(), Y)
            count += 1
            step += 1
    except Exception as e:  # an error of the pack itself: every member still in it fails with it
        for m in members:
            yield m.failed(e)


class PackOptimizer:
    """torch.optim's SGD, Adam or AdamW (as `train._optimizer` builds them: dampening 0, no
    Nesterov; betas (0.9, 0.999), eps 1e-8, no AMSGrad) over stacked parameters `(P, ...)`, with a
    learning rate, weight decay and momentum per member.

    Each update is torch's single-tensor CPU update written with the same operations in the same
    order, the per-member scalars as `(P, 1, ...)` tensors: an elementwise op rounds per element,
    so a member's update equals its solo update to the bit given the same gradient. The scalars are
    computed in float64 and rounded once to float32, as torch rounds the Python floats it is given.
    Written as few passes over memory as possible: at these sizes the step is bandwidth-bound, and
    separate temporaries made it cost as much as backward.
    """

    def __init__(self, name: str, params: list[torch.Tensor], train_args: list, device: str):
        assert name in PACK_OPTIMIZERS, name
        self.name, self.t = name, 0

        def per_member(field: str) -> torch.Tensor:
            return torch.tensor([getattr(a, field) for a in train_args], device=device, dtype=torch.float64)

        self.lr, self.wd, self.momentum = per_member("lr"), per_member("weight_decay"), per_member("momentum")
        # SGD: the momentum buffer; Adam(W): exp_avg and exp_avg_sq
        self.state = [[torch.zeros_like(p) for p in params] for _ in range(1 if name == "sgd" else 2)]

    def keep(self, idx: torch.Tensor) -> None:
        """Drop the state of every member not in `idx`."""
        self.lr, self.wd, self.momentum = (v.index_select(0, idx) for v in (self.lr, self.wd, self.momentum))
        self.state = [[s.index_select(0, idx) for s in states] for states in self.state]

    def step(self, params: list[torch.Tensor], lr_factor: float) -> None:
        """One update of `params` from their `.grad`, with each member's lr times `lr_factor`."""
        self.t += 1
        lr = self.lr * lr_factor  # float64, like the solo loop's Python float
        if self.name == "sgd":
            self._sgd(params, lr)
        else:
            self._adam(params, lr, decoupled=self.name == "adamw")

    def _sgd(self, params: list[torch.Tensor], lr: torch.Tensor) -> None:
        """g = grad + wd * p; buf = momentum * buf + g (buf = g on the first step, as torch
        initialises it, which equals it from a zero buffer); p -= lr * buf."""
        momentum = bool(self.momentum.any())
        lr, wd, mom = lr.float(), self.wd.float(), self.momentum.float()
        for p, buf in zip(params, self.state[0]):
            shape = _member_shape(p)
            g = torch.addcmul(p.grad, wd.view(shape), p)  # the order of torch's SGD, to round as it does
            if momentum:
                g = buf.mul_(mom.view(shape)).add_(g)
            p.addcmul_(lr.view(shape), g, value=-1)

    def _adam(self, params: list[torch.Tensor], lr: torch.Tensor, decoupled: bool) -> None:
        """torch.optim.adam._single_tensor_adam: AdamW scales p by 1 - lr * wd first, Adam adds
        wd * p to the gradient; then the moments, their bias corrections (one step count for the
        whole pack: its members start and step together) and p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)."""
        beta1, beta2 = ADAM_BETAS
        bc1, bc2_sqrt = 1 - beta1 ** float(self.t), (1 - beta2 ** float(self.t)) ** 0.5
        neg_step_size = (-(lr / bc1)).float()
        shrink, wd = (1 - lr * self.wd).float(), self.wd.float()
        for p, exp_avg, exp_avg_sq in zip(params, *self.state):
            shape = _member_shape(p)
            grad = p.grad
            if decoupled:
                p.mul_(shrink.view(shape))
            else:
                grad = torch.addcmul(grad, wd.view(shape), p)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(ADAM_EPS)
            # addcdiv's CPU kernel computes p + (value * m) / denom: the product first, as here
            p.addcdiv_(exp_avg * neg_step_size.view(shape), denom)


def _member_shape(p: torch.Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a per-member `(P,)` tensor against the stacked `p`."""
    return (-1,) + (1,) * (p.dim() - 1)


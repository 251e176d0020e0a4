"""Packed training: trials of the same shape trained together as one vectorized model.

A pack stacks its members' weights along a leading axis and trains them with batched matmuls.
Each member keeps everything that makes it its own trial: its task object (its generators, its
hidden structure, its training set and test set), its initial weights (drawn exactly as a solo run
draws them), its learning rate, weight decay and momentum, its metric rows, its early stop. A
member that ends (success, `max_steps`, divergence) is dropped from the stacks at that evaluation,
so a heavy tail of slow members costs only what they use.

Members may differ in what `Task.pack_free` and `Model.pack_free` name (for sparse parity and the
MLP: seed, train_size, noise, init, sparsity) and in lr, weight_decay, momentum and the success
criterion; everything else must be equal (`pack_key`), the learning-rate schedule, its warmup and
the precision included: each member steps with its own lr times the pack's common `lr_factor`, and
the pack's forward pass runs under one autocast context. A member's curve equals its solo curve up
to floating-point rounding (batched and plain matmuls sum in different orders).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import traceback
from collections.abc import Iterator

import torch

from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.workers.models import models
from paretolab.workers.schedule import lr_factor
from paretolab.workers.train import _result, autocast, failed
from paretolab.workers.trial import Assignment, MetricRow, TrialResult

# `pack_size: auto` fills a pack up to this many parameters. On the 2-core CPU (benchmarks/packing.py)
# width-100 MLPs (5k parameters) gain 11-12x at packs of 64-256 while width-1000 ones (52k) gain
# 1.4x at 8 and lose at 64: past ~5e5 parameters a pack's working set leaves the caches. On a GPU
# packs stay kernel-launch-bound far longer; 1e8 there is an estimate, not a measurement.
AUTO_PACK_PARAMS = {"cpu": 5 * 10**5, "cuda": 10**8}
MAX_AUTO_PACK = 256


def pack_key(trial) -> str | None:
    """Trials with equal keys can train in one pack; None if the trial cannot be packed."""
    task_cls, model_cls = tasks()[trial.task], models()[trial.model]
    # packs are vector-input models only, so one example is one token (see train._result)
    if not getattr(model_cls, "packable", False) or trial.train.optimizer != "sgd":
        return None
    fixed = {
        "task": trial.task, "model": trial.model, "max_steps": trial.max_steps, "eval": dataclasses.asdict(trial.eval),
        "task_args": {k: v for k, v in dataclasses.asdict(trial.task_args).items() if k not in task_cls.pack_free},
        "model_args": {k: v for k, v in dataclasses.asdict(trial.model_args).items() if k not in model_cls.pack_free},
        "batch_size": trial.train.batch_size, "loss": trial.train.loss,
        "schedule": trial.train.schedule, "warmup_steps": trial.train.warmup_steps,
        "precision": trial.train.precision,
    }
    return json.dumps(fixed, sort_keys=True)


def auto_pack_size(n_params: int, device: str = "cpu") -> int:
    budget = AUTO_PACK_PARAMS["cuda" if device.startswith("cuda") else "cpu"]
    return max(1, min(MAX_AUTO_PACK, budget // max(1, n_params)))


def train_pack(assignments: list[Assignment], device: str = "cpu") -> Iterator[MetricRow | TrialResult]:
    """Train `assignments` (equal `pack_key`) as one pack, yielding each member's metric rows and,
    as each member ends, its `TrialResult`."""
    start = time.perf_counter()
    first = assignments[0].trial
    task_cls, model_cls = tasks()[first.task], models()[first.model]
    members, task_objs, nets = [], [], []
    for a in assignments:
        try:
            t = a.trial
            task_objs.append(task_cls(t.task_args, t.seed, t.eval.test_size, device))
            nets.append(model_cls(t.model_args, task_cls.io(t.task_args), generator(t.seed, "init", device), device))
            members.append(a)
        except Exception as e:  # this member cannot start; the others can
            yield failed(a.trial, a.attempt, _error(e), time.perf_counter() - start)
    if not members:
        return
    pack = model_cls.stack(nets)
    # lr in float64 so that lr * factor rounds once to float32, as the solo loop's Python float does
    hp = {name: torch.tensor([getattr(a.trial.train, name) for a in members], device=device,
                             dtype=torch.float64 if name == "lr" else torch.float32)
          for name in ("lr", "weight_decay", "momentum")}
    buffers = [torch.zeros_like(p) for p in pack.params]
    B, kind, every, max_steps = first.train.batch_size, first.train.loss, first.eval.every, first.max_steps
    schedule, warmup_steps, precision = first.train.schedule, first.train.warmup_steps, first.train.precision
    n_params = nets[0].n_params
    P = len(members)
    loss_sum, error_sum = torch.zeros(P, device=device), torch.zeros(P, device=device)
    firsts: list[int | None] = [None] * P
    next_batches = task_cls.packed_batches(task_objs)
    step, count = 0, 0
    try:
        while members:
            if step % every == 0 or step == max_steps:
                keep = []
                for i, (a, task) in enumerate(zip(members, task_objs)):
                    train_loss = float(loss_sum[i]) / count if count else None
                    train_error = float(error_sum[i]) / count if count else None
                    metrics = {"train_loss": train_loss, "train_error": train_error,
                               **task.evaluate(pack.member(i), kind)}
                    yield MetricRow(a.trial.trial_id, a.attempt, step, step * B, time.perf_counter() - start, metrics)
                    ended = _ended(a, step, metrics, firsts, i, max_steps)
                    if ended:
                        yield _result(a.trial, a.attempt, ended, step, start, firsts[i], n_params, 1, metrics)
                    else:
                        keep.append(i)
                if len(keep) < len(members):
                    members, task_objs, firsts = ([xs[i] for i in keep] for xs in (members, task_objs, firsts))
                    idx = torch.tensor(keep, device=device, dtype=torch.long)
                    pack.keep(idx)
                    buffers = [b.index_select(0, idx) for b in buffers]
                    hp = {k: v.index_select(0, idx) for k, v in hp.items()}
                    if not members:
                        return
                    next_batches = task_cls.packed_batches(task_objs)
                loss_sum, error_sum, count = torch.zeros(len(members), device=device), torch.zeros(len(members), device=device), 0
            X, Y = next_batches(B)
            with autocast(precision, device):
                out = pack.forward(X)
                losses = task_cls.packed_loss(task_objs[0], out, Y, kind)
            for p in pack.params:
                p.grad = None
            losses.sum().backward()  # members share no weight, so each gets exactly its own gradient
            with torch.no_grad():
                lr = (hp["lr"] * lr_factor(step, max_steps, schedule, warmup_steps)).float()
                _sgd_step(pack.params, buffers, lr, hp)
                loss_sum += losses.detach()
                error_sum += task_cls.packed_error(task_objs[0], out.detach(), Y)
            count += 1
            step += 1
    except Exception as e:  # an error of the pack itself: every member still in it fails with it
        for a in members:
            yield failed(a.trial, a.attempt, _error(e), time.perf_counter() - start)


def _ended(a: Assignment, step: int, metrics: dict, firsts: list, i: int, max_steps: int) -> str | None:
    if any(v is not None and not math.isfinite(v) for v in metrics.values()):
        return "diverged"
    if firsts[i] is None and a.trial.success.holds(metrics):
        firsts[i] = step
    if step == max_steps or (firsts[i] is not None and a.trial.success.stop_on_success):
        return "finished"
    return None


def _sgd_step(params: list[torch.Tensor], buffers: list[torch.Tensor], lr: torch.Tensor,
              hp: dict[str, torch.Tensor]) -> None:
    """torch.optim.SGD's update (dampening 0, no Nesterov) with this step's learning rate `lr` `(P,)`
    and a weight decay and momentum per member: g = grad + wd * p; buf = momentum * buf + g;
    p -= lr * buf. (On the first step buf = g, as torch initialises it.) Written as few passes over
    memory as possible: at these sizes the step is bandwidth-bound, and separate temporaries made it
    cost as much as backward."""
    momentum = bool(hp["momentum"].any())
    for p, buf in zip(params, buffers):
        shape = (-1,) + (1,) * (p.dim() - 1)
        wd = hp["weight_decay"].view(shape)
        g = torch.addcmul(p.grad, wd, p)  # the order of torch's SGD, to round as it does
        if momentum:
            g = buf.mul_(hp["momentum"].view(shape)).add_(g)
        p.addcmul_(lr.view(shape), g, value=-1)


def _error(e: Exception) -> str:
    return "".join(traceback.format_exception_only(e)).strip()

"""The conformance test every registered task runs (small arguments; no Ray)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from paretolab.tasks.registry import BUILTIN, tasks
from paretolab.tasks.seeding import generator
from paretolab.workers.models import models
from paretolab.workers.prefetch import PackBatches

SMALL = {  # arguments that keep each built-in task tiny
    "sparse_parity": {"n": 10, "k": 2},
    "flipflop": {"length": 16},
    "automaton": {"automaton": "symmetric", "length": 8},
    "sparse_boolean": {"length": 8, "k": 2},
    "relu_teacher": {"d": 6, "k": 2},
}
MODEL = {"vector": ("mlp", {"width": 8}), "sequence": ("lstm", {"hidden": 8})}


def build(name: str, seed: int = 0):
    cls = tasks()[name]
    args = cls.Args(**SMALL[name])
    args.check()
    io = cls.io(args)
    model_name, model_args = MODEL[io.kind]
    model_cls = models()[model_name]
    model = model_cls(model_cls.Args(**model_args), io, generator(seed, "init"))
    return cls, cls(args, seed, 32), model


def test_every_builtin_is_covered():
    assert set(BUILTIN) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_contract(name):
    cls, task, model = build(name)
    assert cls.losses and cls.metrics and "test_error" in cls.metrics
    x, y = task.train_batch(4)
    for kind in cls.losses:
        out = model.forward(x)
        loss = task.loss(out, y, kind)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()  # the loss reaches every weight
        assert all(p.grad is not None for p in model.params)
        for p in model.params:
            p.grad = None
    err = float(task.error(out.detach(), y))
    assert 0.0 <= err <= 1.0 or name == "relu_teacher"  # relu_teacher's error is a relative MSE
    metrics = task.evaluate(model.forward, cls.losses[0])
    assert set(metrics) == set(cls.metrics)
    assert all(isinstance(v, float) for v in metrics.values())


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_is_determined_by_its_seed(name):
    _, a, model = build(name, seed=3)
    _, b, _ = build(name, seed=3)
    _, c, _ = build(name, seed=4)
    xa, ya = a.train_batch(8)
    xb, yb = b.train_batch(8)
    xc, _ = c.train_batch(8)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, xc)
    kind = type(a).losses[0]
    assert a.evaluate(model.forward, kind) == b.evaluate(model.forward, kind)
    a.evaluate(model.forward, kind)  # evaluating does not move the training stream
    assert torch.equal(a.train_batch(8)[0], b.train_batch(8)[0])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_packed_loss_and_error_equal_the_members(name):
    cls, task, model = build(name)
    batches = [task.train_batch(4) for _ in range(3)]
    out = torch.stack([model.forward(x) for x, _ in batches]).detach()
    Y = torch.stack([y for _, y in batches])
    kind = cls.losses[0]
    expected = torch.stack([task.loss(out[i], Y[i], kind) for i in range(3)])
    assert torch.allclose(task.packed_loss(out, Y, kind), expected, rtol=1e-5, atol=1e-6)
    expected = torch.stack([task.error(out[i], Y[i]) for i in range(3)])
    assert torch.allclose(task.packed_error(out, Y), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_args_are_frozen_dataclasses_with_defaults(name):
    cls = tasks()[name]
    assert dataclasses.is_dataclass(cls.Args) and cls.Args.__dataclass_params__.frozen
    cls.Args()  # every argument has a default
    assert set(cls.pack_free) <= {f.name for f in dataclasses.fields(cls.Args)}


@pytest.mark.parametrize("name, extra", [(n, {}) for n in sorted(SMALL)] + [
    ("sparse_parity", {"train_size": 50}), ("sparse_parity", {"noise": 0.1})])
def test_packed_batches_equal_each_members_train_batch(name, extra):
    cls = tasks()[name]
    args = cls.Args(**{**SMALL[name], **extra})
    members = [cls(args, seed, 16) for seed in range(3)]
    twins = [cls(args, seed, 16) for seed in range(3)]
    next_batches = PackBatches(members).next
    for _ in range(3):
        X, Y = next_batches(5)
        for i, twin in enumerate(twins):
            x, y = twin.train_batch(5)
            assert torch.equal(X[i], x) and torch.equal(Y[i], y)

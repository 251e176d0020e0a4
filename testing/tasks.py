"""The task conformance suite: the contract of `paretolab.tasks.base.Task`, on small arguments.

`check_task(task, args)` runs every check below; each can also run alone (paretolab's own tests
parametrize them over the built-ins). `args` are arguments that keep the task tiny: a dict of its
`Args` fields or an `Args` instance (the defaults when None). No Ray, no store: a few batches on CPU.
"""

from __future__ import annotations

import dataclasses

import torch

from paretolab.tasks.base import IO, Task
from paretolab.tasks.registry import tasks
from paretolab.tasks.seeding import generator
from paretolab.testing.expect import as_args, expect, registered
from paretolab.models.registry import models

# the model a task is checked with, by the kind of its data: small enough for a CPU in milliseconds
SMALL_MODELS = {"vector": ("mlp", {"width": 8}), "sequence": ("lstm", {"hidden": 8})}
TEST_SIZE = 32


def task_class(task: str | type[Task]) -> type[Task]:
    """The class of `task`, a registered name or the class itself."""
    return registered("task", task, tasks() if isinstance(task, str) else {})


def task_args(cls: type[Task], args=None):
    """`args` as an instance of `cls.Args` (a dict of fields, an instance, or None for the defaults), checked."""
    args = as_args(cls, args)
    args.check()
    return args


def build(cls: type[Task], args, seed: int = 0, model: tuple[str, dict] | None = None):
    """(a task of `cls` with `args` and `seed`, a small model of its data drawn from the same seed)."""
    io = cls.io(args)
    model_name, model_args = SMALL_MODELS[io.kind] if model is None else model
    model_cls = models()[model_name]
    net = model_cls(model_cls.Args(**model_args), io, generator(seed, "init"))
    return cls(args, seed, TEST_SIZE), net


def check_declaration(cls: type[Task], name: str | None = None) -> None:
    """The class declares its contract: a name, losses, metrics with `test_error`, frozen `Args`
    whose every field has a default, `pack_free` among them, and no argument a result column has."""
    expect(isinstance(cls.name, str) and (name is None or cls.name == name),
           f"{cls.__name__}.name is {cls.name!r}; registered as {name!r}")
    expect(cls.losses and cls.metrics and "test_error" in cls.metrics,
           f"{cls.name}: losses {cls.losses!r} and metrics {cls.metrics!r} must be non-empty, with test_error")
    expect(dataclasses.is_dataclass(cls.Args) and cls.Args.__dataclass_params__.frozen,
           f"{cls.name}: Args must be a frozen dataclass")
    cls.Args()  # every argument has a default
    fields = {f.name for f in dataclasses.fields(cls.Args)}
    expect(set(cls.pack_free) <= fields, f"{cls.name}: pack_free {cls.pack_free!r} names no argument of {fields}")
    if name is not None:
        from paretolab.orchestrator.grid import parameters

        parameters(name, "mlp")  # raises SpecError on an argument named like a train argument or a result column


def check_losses_and_metrics(cls: type[Task], args, error_is_fraction: bool = True) -> None:
    """Each loss is a finite scalar that reaches every weight of a model; the error of a batch is
    in [0, 1] (unless `error_is_fraction` is False: relu_teacher's is a relative MSE); `evaluate`
    returns exactly `metrics`, as floats."""
    task, model = build(cls, args)
    io = cls.io(args)
    expect(isinstance(io, IO) and io.kind in ("vector", "sequence"), f"{cls.name}.io(args) is {io!r}, not an IO")
    x, y = task.train_batch(4)
    for kind in cls.losses:
        out = model.forward(x)
        loss = task.loss(out, y, kind)
        expect(loss.dim() == 0 and torch.isfinite(loss), f"{cls.name}: loss {kind!r} is {loss!r}, not a finite scalar")
        loss.backward()
        expect(all(p.grad is not None for p in model.params), f"{cls.name}: loss {kind!r} does not reach every weight")
        for p in model.params:
            p.grad = None
    err = float(task.error(out.detach(), y))
    expect(0.0 <= err <= 1.0 or not error_is_fraction, f"{cls.name}: error {err} is not a fraction")
    metrics = task.evaluate(model.forward, cls.losses[0])
    expect(set(metrics) == set(cls.metrics), f"{cls.name}: evaluate returned {sorted(metrics)}, declared {cls.metrics}")
    expect(all(isinstance(v, float) for v in metrics.values()), f"{cls.name}: evaluate returned non-floats {metrics}")


def check_seeded(cls: type[Task], args) -> None:
    """The seed alone determines the training stream and the test set; other seeds give other
    batches; evaluating does not move the training stream."""
    a, model = build(cls, args, seed=3)
    b, _ = build(cls, args, seed=3)
    c, _ = build(cls, args, seed=4)
    xa, ya = a.train_batch(8)
    xb, yb = b.train_batch(8)
    xc, _ = c.train_batch(8)
    expect(torch.equal(xa, xb) and torch.equal(ya, yb), f"{cls.name}: one seed gave two training streams")
    expect(not torch.equal(xa, xc), f"{cls.name}: seeds 3 and 4 gave the same first batch")
    kind = cls.losses[0]
    expect(a.evaluate(model.forward, kind) == b.evaluate(model.forward, kind), f"{cls.name}: one seed, two test sets")
    a.evaluate(model.forward, kind)
    expect(torch.equal(a.train_batch(8)[0], b.train_batch(8)[0]), f"{cls.name}: evaluate moved the training stream")


def check_packed_loss_and_error(cls: type[Task], args) -> None:
    """`packed_loss` and `packed_error` of stacked outputs equal `loss` and `error` of each member."""
    task, model = build(cls, args)
    batches = [task.train_batch(4) for _ in range(3)]
    out = torch.stack([model.forward(x) for x, _ in batches]).detach()
    Y = torch.stack([y for _, y in batches])
    kind = cls.losses[0]
    expected = torch.stack([task.loss(out[i], Y[i], kind) for i in range(3)])
    expect(torch.allclose(task.packed_loss(out, Y, kind), expected, rtol=1e-5, atol=1e-6),
           f"{cls.name}: packed_loss differs from each member's loss")
    expected = torch.stack([task.error(out[i], Y[i]) for i in range(3)])
    expect(torch.allclose(task.packed_error(out, Y), expected, rtol=1e-5, atol=1e-6),
           f"{cls.name}: packed_error differs from each member's error")


def check_packed_batches(cls: type[Task], args) -> None:
    """A pack's batches (`workers.prefetch.PackBatches`, through `packed_draws`) are, at every step,
    each member's own next `train_batch`; once members leave the pack (`keep`), the others' streams go on."""
    from paretolab.workers.prefetch import PackBatches

    members = [cls(args, seed, 16) for seed in range(3)]
    twins = [cls(args, seed, 16) for seed in range(3)]
    pack = PackBatches(members)
    for step, kept in enumerate([[0, 1, 2]] * 3 + [[2, 0]] * 2):
        if step == 3:
            pack.keep(torch.tensor(kept))
        X, Y = pack.next(5)
        for i, member in enumerate(kept):
            x, y = twins[member].train_batch(5)
            expect(torch.equal(X[i], x) and torch.equal(Y[i], y),
                   f"{cls.name}: the packed batch {step} of member {member} is not its own train_batch")


def check_task(task: str | type[Task], args=None, *, error_is_fraction: bool = True) -> None:
    """Every check of the task contract on `task` (a registered name or a `Task` subclass) with
    `args` (a dict of small arguments, an `Args` instance, or None for the defaults).

    Raises:
        ConformanceError: the first part of the contract the task breaks.
    """
    cls = task_class(task)
    check_declaration(cls, task if isinstance(task, str) else None)
    args = task_args(cls, args)
    check_losses_and_metrics(cls, args, error_is_fraction)
    check_seeded(cls, args)
    check_packed_loss_and_error(cls, args)
    check_packed_batches(cls, args)

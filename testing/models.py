"""The model conformance suite: the contract of `paretolab.models.base.Model` (and of
`PackableModel` and its `Pack`), on a tiny instance, on CPU.

`check_model(model, args, io)` runs every check below; each can also run alone (paretolab's own
tests parametrize them over the registered models). `args` keep the model tiny: a dict of its
`Args` fields, an `Args` instance, or None for the defaults; `io` is the shape of the data, by
default a small one of the first kind the model accepts.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from paretolab.tasks.base import IO
from paretolab.testing.expect import as_args, expect, registered
from paretolab.vocabulary.schema import RESERVED
from paretolab.vocabulary.trial import TrainArgs
from paretolab.models.base import Model, PackableModel
from paretolab.models.registry import models

VECTOR = IO("vector", input_dim=6, output_dim=3)
SEQUENCE = IO("sequence", input_dim=4, output_dim=4, length=8)  # the copy task below: vocabulary 4, T = 8
SMALL_IO = {"vector": VECTOR, "sequence": SEQUENCE}


def model_class(model: str | type[Model]) -> type[Model]:
    """The class of `model`, a registered name or the class itself."""
    return registered("model", model, models() if isinstance(model, str) else {})


def model_args(cls: type[Model], args=None):
    """`args` as an instance of `cls.Args` (a dict of fields, an instance, or None for the defaults)."""
    return as_args(cls, args)


def build(cls: type[Model], args, io: IO, seed: int = 0) -> Model:
    return cls(args, io, torch.Generator().manual_seed(seed), "cpu")


def inputs(io: IO, B: int = 5, seed: int = 1) -> torch.Tensor:
    """A seeded batch of inputs of shape `io`: float vectors, or token ids."""
    g = torch.Generator().manual_seed(seed)
    if io.kind == "vector":
        return torch.randn(B, io.input_dim, generator=g)
    return torch.randint(io.input_dim, (B, io.length), generator=g)


def task_batch(io: IO, B: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable toy problem for either IO kind: the argmax of the first coordinates of a vector,
    or the previous token of a sequence (the first position has none and is not scored)."""
    if io.kind == "vector":
        x = torch.randn(B, io.input_dim, generator=g)
        return x, x[:, : io.output_dim].argmax(dim=1)
    x = torch.randint(io.input_dim, (B, io.length), generator=g)
    return x, x[:, :-1]


def task_loss(io: IO, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if io.kind == "vector":
        return F.cross_entropy(out, y)
    return F.cross_entropy(out[:, 1:].reshape(-1, io.output_dim), y.reshape(-1))


def graph_leaves(out: torch.Tensor) -> set[int]:
    """Ids of the tensors autograd would accumulate gradients into for `out`."""
    seen, leaves, stack = set(), set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if hasattr(fn, "variable"):
            leaves.add(id(fn.variable))
        stack.extend(next_fn for next_fn, _ in fn.next_functions)
    return leaves


def check_declaration(cls: type[Model], args, io: IO, name: str | None = None) -> None:
    """The class declares its contract: its registered name, the IO kinds it accepts, `Args` of
    which `args` is one and passes `check(io)`, and no argument named like a train argument or a result column."""
    expect(name is None or cls.name == name, f"{cls.__name__}.name is {cls.name!r}; registered as {name!r}")
    expect(io.kind in cls.accepts and set(cls.accepts) <= {"vector", "sequence"},
           f"{cls.name}: accepts {cls.accepts!r}, checked on {io.kind!r}")
    expect(isinstance(args, cls.Args), f"{cls.name}: {args!r} is not a {cls.Args.__name__}")
    args.check(io)
    clashes = {f.name for f in dataclasses.fields(cls.Args)} & (RESERVED | {f.name for f in dataclasses.fields(TrainArgs)})
    expect(not clashes, f"{cls.name}: arguments {sorted(clashes)} are named like train arguments or result columns")
    if name is not None:
        from paretolab.orchestrator.grid import parameters

        parameters("sparse_parity", name)  # no argument name clashes with the task, train or results


def check_seeded(cls: type[Model], args, io: IO) -> None:
    """The generator alone draws the weights: one seed, one model; another seed, another model."""
    a, b, c = build(cls, args, io, 0), build(cls, args, io, 0), build(cls, args, io, 1)
    expect(all(torch.equal(p, q) for p, q in zip(a.params, b.params, strict=True)), f"{cls.name}: one seed, two models")
    expect(any(not torch.equal(p, q) for p, q in zip(a.params, c.params, strict=True)),
           f"{cls.name}: seeds 0 and 1 drew the same weights")
    x = inputs(io)
    expect(torch.equal(a.forward(x), b.forward(x)), f"{cls.name}: one seed, two outputs")
    expect(not torch.equal(a.forward(x), c.forward(x)), f"{cls.name}: seeds 0 and 1 give the same outputs")


def check_output_shape(cls: type[Model], args, io: IO) -> None:
    """`forward` maps (B, input_dim) to (B, output_dim), or (B, T) token ids to (B, T, output_dim) logits, finite float32."""
    out = build(cls, args, io).forward(inputs(io, B=3))
    expected = (3, io.output_dim) if io.kind == "vector" else (3, io.length, io.output_dim)
    expect(out.shape == expected and out.dtype == torch.float32 and torch.isfinite(out).all(),
           f"{cls.name}: forward gave {tuple(out.shape)} {out.dtype}, expected {expected} finite float32")


def check_params(cls: type[Model], args, io: IO) -> None:
    """`params` are exactly the trainable leaves `forward` uses, each once; `n_params` counts them."""
    model = build(cls, args, io)
    expect(all(p.is_leaf and p.requires_grad for p in model.params), f"{cls.name}: a param is not a trainable leaf")
    expect(len({id(p) for p in model.params}) == len(model.params), f"{cls.name}: a param is listed twice")
    expect(graph_leaves(model.forward(inputs(io))) == {id(p) for p in model.params},
           f"{cls.name}: params are not exactly the leaves forward uses")
    expect(model.n_params == sum(p.numel() for p in model.params), f"{cls.name}: n_params is not the params' size")


def check_param_count(cls: type[Model], args, io: IO) -> None:
    """`param_count` gives `n_params` without building the weights, and so does the generic way (the meta device)."""
    n = build(cls, args, io).n_params
    expect(cls.param_count(args, io) == n, f"{cls.name}: param_count {cls.param_count(args, io)} != n_params {n}")
    expect(Model.param_count.__func__(cls, args, io) == n, f"{cls.name}: the generic param_count != n_params {n}")


def check_global_rng(cls: type[Model], args, io: IO) -> None:
    """Building a model leaves torch's global random state alone (every draw is from its generator)."""
    state = torch.random.get_rng_state()
    build(cls, args, io)
    expect(torch.equal(torch.random.get_rng_state(), state), f"{cls.name}: building it drew from the global RNG")


def check_learns(cls: type[Model], args, io: IO, steps: int = 60) -> None:
    """60 SGD steps on a toy problem cut the test loss by 30%."""
    model = build(cls, args, io)
    opt = torch.optim.SGD(model.params, lr=0.2, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    x_test, y_test = task_batch(io, 256, torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = float(task_loss(io, model.forward(x_test), y_test))
    for _ in range(steps):
        x, y = task_batch(io, 32, g)
        loss = task_loss(io, model.forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(task_loss(io, model.forward(x_test), y_test))
    expect(after < 0.7 * before, f"{cls.name}: the loss went from {before} to {after} in {steps} SGD steps")


def check_pack(cls: type[Model], args, io: IO, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """For a packable model: `stack` leaves its members unchanged; the pack's `forward` computes each
    member's, and so does `member(i)`; `keep` drops members; an own backward gives autograd's gradients."""
    if not issubclass(cls, PackableModel):
        return
    members = [build(cls, args, io, seed) for seed in range(3)]
    before = [[p.detach().clone() for p in m.params] for m in members]
    pack = cls.stack(members)
    expect(all(p.is_leaf and p.requires_grad for p in pack.params), f"{cls.name}: a pack param is not a trainable leaf")
    X = torch.stack([inputs(io, seed=i) for i in range(3)])
    out = pack.forward(X)
    with torch.no_grad():
        for i, m in enumerate(members):
            expect(torch.allclose(out[i], m.forward(X[i]), rtol=rtol, atol=atol), f"{cls.name}: pack member {i} differs")
            expect(torch.allclose(pack.member(i)(X[i]), m.forward(X[i]), rtol=rtol, atol=atol),
                   f"{cls.name}: pack.member({i}) differs from the member")
    if pack.own_backward:
        _check_own_backward(cls, pack, members, X, io, rtol, atol)
    unchanged = all(torch.equal(p, q) for m, ps in zip(members, before) for p, q in zip(m.params, ps, strict=True))
    expect(unchanged, f"{cls.name}: stack or the pack's training changed its members' weights")
    pack.keep(torch.tensor([2, 0]))
    with torch.no_grad():
        expect(torch.allclose(pack.member(0)(X[2]), members[2].forward(X[2]), rtol=rtol, atol=atol),
               f"{cls.name}: after keep([2, 0]) member 0 is not the old member 2")


def _check_own_backward(cls, pack, members, X, io, rtol, atol) -> None:
    """The pack's own gradients of the summed member losses are autograd's for each member."""
    Y = torch.stack([task_batch(io, X.shape[1], torch.Generator().manual_seed(i))[1] for i in range(3)])
    out = pack.forward_for_backward(X)
    sum(task_loss(io, out[i], Y[i]) for i in range(3)).backward()
    pack.backward(out.grad)
    for i, m in enumerate(members):
        grads = torch.autograd.grad(task_loss(io, m.forward(X[i]), Y[i]), m.params)
        for p, g in zip(pack.params, grads, strict=True):
            expect(torch.allclose(p.grad[i], g, rtol=rtol, atol=atol), f"{cls.name}: own backward differs for member {i}")


def check_model(model: str | type[Model], args=None, io: IO | None = None) -> None:
    """Every check of the model contract on `model` (a registered name or a `Model` subclass) with
    `args` (small arguments: a dict, an `Args` instance, or None for the defaults) on data of shape
    `io` (by default a small one of the first kind the model accepts).

    Raises:
        ConformanceError: the first part of the contract the model breaks.
    """
    cls = model_class(model)
    args = model_args(cls, args)
    io = io or SMALL_IO[cls.accepts[0]]
    check_declaration(cls, args, io, model if isinstance(model, str) else None)
    for check in (check_seeded, check_output_shape, check_params, check_param_count, check_global_rng, check_learns, check_pack):
        check(cls, args, io)

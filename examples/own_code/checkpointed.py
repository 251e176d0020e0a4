"""A trial that survives being stopped: online (n, k)-sparse parity, a 2-layer torch.nn MLP trained
with SGD and momentum, checkpointed every `checkpoint_every` steps.

A checkpoint holds everything the rest of the run depends on: the model's and the optimizer's
state_dicts (the momentum buffers), the step, the data generator's state (the batches still to
come) and the running sums of the training loss. A trial stopped at any point (its worker or the
driver killed, Ctrl-C) and run again loads it and continues: the steps go on from the checkpoint
(the curve up to it comes back from the checkpoint too), and the rows it reports are those an
uninterrupted run reports. The script imports nothing of paretolab: `ctx` is all it is given.
"""

from __future__ import annotations

import math

import torch


def main(config: dict, ctx) -> None:
    """Train from the trial's checkpoint if it has one, else from scratch, reporting every
    `eval_every` steps and saving a checkpoint every `checkpoint_every` steps."""
    n, k, w, B = config["n"], config["k"], config["width"], config["batch_size"]
    max_steps = config["max_steps"]
    g = torch.Generator().manual_seed(ctx.seed)
    support = torch.randperm(n, generator=g)[:k]
    test_x, test_y = parity(n, support, config["test_size"], g)
    model = torch.nn.Sequential(torch.nn.Linear(n, w), torch.nn.ReLU(), torch.nn.Linear(w, 1))
    for layer in (model[0], model[2]):  # nn.Linear's own law, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from g
        for p in layer.parameters():
            torch.nn.init.uniform_(p, -1 / math.sqrt(layer.in_features), 1 / math.sqrt(layer.in_features), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=config["lr"], momentum=config["momentum"])
    ctx.n_params = sum(p.numel() for p in model.parameters())
    ctx.flops_per_sample = 6 * ctx.n_params  # forward 2 + backward 4 FLOPs per parameter per example

    step, train = 0, torch.zeros(3)  # train: sums of the minibatch loss, the error, and their count
    state = ctx.load_checkpoint()
    if state is None:
        ctx.report(step=0, samples=0, **evaluate(model, test_x, test_y))
    else:  # the curve up to the checkpoint is already reported; go on from there
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["rng"])
        step, train = state["step"], state["train"]
    while step < max_steps:
        x, y = parity(n, support, B, g)
        out = model(x).squeeze(-1)
        loss = torch.relu(1 - out * y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        train += torch.stack([loss.detach(), error(out.detach(), y), torch.tensor(1.0)])
        if step % config["eval_every"] == 0 or step == max_steps:
            means = {"train_loss": float(train[0] / train[2]), "train_error": float(train[1] / train[2])}
            train = torch.zeros(3)
            if ctx.report(step=step, samples=step * B, **means, **evaluate(model, test_x, test_y)):
                break
        if step % config["checkpoint_every"] == 0:
            ctx.save_checkpoint({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                 "rng": g.get_state(), "train": train})


def parity(n: int, support: torch.Tensor, m: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`m` inputs uniform on {-1, +1}^n and their labels, the product of the `support` coordinates."""
    x = torch.randint(0, 2, (m, n), generator=g).float() * 2 - 1
    return x, x[:, support].prod(dim=1)


def error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of wrong signs (`not > 0`: a NaN score counts as wrong)."""
    return (~(out * y > 0)).float().mean()


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    out = model(x).squeeze(-1)
    test_error = float(error(out, y))
    return {"test_loss": float(torch.relu(1 - out * y).mean()), "test_error": test_error, "test_acc": 1 - test_error}

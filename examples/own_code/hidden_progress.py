"""Online (n, k)-sparse parity learned by a 2-layer ReLU MLP with SGD and the hinge loss, written as
plain PyTorch: the setup of "Hidden Progress in Deep Learning: SGD Learns Parities Near the
Computational Limit" (Barak, Edelman, Goel, Kakade, Malach, Zhang, NeurIPS 2022).

Besides the loss and the error, every evaluation reports a hidden-progress measure read off the
weights: `support_share`, the fraction of the first layer's squared weight norm that lies on the k
relevant input coordinates. It starts near k/n (a random initialization spreads the norm evenly)
and climbs while the loss is still on its plateau, before the loss drops: the progress SGD makes
there is hidden from the loss but shows in the weights (Barak et al.'s "hidden progress").

`main(config, ctx)` trains one configuration; `main_many(configs, ctxs)` trains several of one
width at once with the weights stacked along a leading axis (one batched matmul per layer), each
member on its own data stream, so that each member's curve is the one `main` reports for it, up to
float rounding. The script imports nothing of paretolab: `ctx` is all it is given.
"""

from __future__ import annotations

import math

import torch


def main(config: dict, ctx) -> None:
    """Train one MLP on fresh batches, reporting every `eval_every` steps until `max_steps` or until
    `ctx.report` says stop (the spec's success criterion held)."""
    n, k, B, w = config["n"], config["k"], config["batch_size"], config["width"]
    max_steps, every = config["max_steps"], config["eval_every"]
    g = torch.Generator().manual_seed(ctx.seed)
    support = torch.randperm(n, generator=g)[:k]  # the k hidden coordinates whose product is the label
    test_x, test_y = parity(n, support, config["test_size"], g)
    params = init_mlp(n, w, g)
    ctx.n_params = sum(p.numel() for p in params)
    ctx.flops_per_sample = 6 * ctx.n_params  # forward 2 + backward 4 FLOPs per parameter per example
    opt = torch.optim.SGD(params, lr=config["lr"], weight_decay=config["weight_decay"])
    train, since = torch.zeros(2), 0  # sums of the minibatch loss and error since the last evaluation
    for step in range(max_steps + 1):
        if step % every == 0 or step == max_steps:
            with torch.no_grad():
                out = forward(params, test_x)
                stop = ctx.report(step=step, samples=step * B, **evaluation(
                    out, test_y, params[0], support, train / since if since else None))
            train, since = torch.zeros(2), 0
            if stop or step == max_steps:
                break
        x, y = parity(n, support, B, g)
        out = forward(params, x)
        loss = hinge(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        train, since = train + torch.stack([loss.detach(), error(out.detach(), y)]), since + 1


def main_many(configs: list[dict], ctxs: list) -> None:
    """`main` for several configurations at once; they differ only in `lr`, `weight_decay` and the
    seed (the spec packs trials of equal `width`; its other parameters are fixed).

    Raises:
        ValueError: the configurations differ in a parameter other than lr, weight_decay and seed.
    """
    shared = [key for key in configs[0] if key not in ("lr", "weight_decay", "seed")]
    for key in shared:
        if any(c.get(key) != configs[0][key] for c in configs):
            raise ValueError(f"main_many packs configurations that differ only in lr, weight_decay and seed; "
                             f"{key!r} differs: add it to the spec's pack_by")
    c0 = configs[0]
    n, k, B, w = c0["n"], c0["k"], c0["batch_size"], c0["width"]
    max_steps, every = c0["max_steps"], c0["eval_every"]
    gens = [torch.Generator().manual_seed(ctx.seed) for ctx in ctxs]
    supports = [torch.randperm(n, generator=g)[:k] for g in gens]
    tests = [parity(n, s, c0["test_size"], g) for s, g in zip(supports, gens)]
    members = [init_mlp(n, w, g) for g in gens]
    for ctx, params in zip(ctxs, members):
        ctx.n_params = sum(p.numel() for p in params)
        ctx.flops_per_sample = 6 * ctx.n_params
    # Stacked along a leading axis P: W1 (P, w, n), b1 (P, w), W2 (P, 1, w), b2 (P, 1).
    params = [torch.stack([m[j].detach() for m in members]).requires_grad_() for j in range(4)]
    lr = torch.tensor([c["lr"] for c in configs])
    wd = torch.tensor([c["weight_decay"] for c in configs])
    S = torch.stack(supports)
    test_x, test_y = torch.stack([t[0] for t in tests]), torch.stack([t[1] for t in tests])
    live = list(range(len(configs)))  # the members still training, in the stack's order
    train, since = torch.zeros(len(live), 2), 0
    for step in range(max_steps + 1):
        if step % every == 0 or step == max_steps:
            with torch.no_grad():
                out = forward_many(params, test_x)
                means = train / since if since else None
                done = []
                for i, m in enumerate(live):
                    metrics = evaluation(out[i], test_y[i], params[0][i], S[i], None if means is None else means[i])
                    if ctxs[m].report(step=step, samples=step * B, **metrics):
                        done.append(i)
            if step == max_steps:
                break
            if done:  # drop the members that stop from every stacked tensor
                keep = torch.tensor([i for i in range(len(live)) if i not in done], dtype=torch.long)
                if len(keep) == 0:
                    break
                live = [live[i] for i in keep.tolist()]
                params = [p.detach()[keep].requires_grad_() for p in params]
                lr, wd, S, test_x, test_y = lr[keep], wd[keep], S[keep], test_x[keep], test_y[keep]
            train, since = torch.zeros(len(live), 2), 0
        batches = [parity(n, S[i], B, gens[m]) for i, m in enumerate(live)]
        X, Y = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        out = forward_many(params, X)
        losses = hinge(out, Y)  # (P,): each member's mean loss
        for p in params:
            p.grad = None
        losses.sum().backward()  # member p's gradient is that of its own loss alone
        with torch.no_grad():
            for p in params:  # torch.optim.SGD's update, with one lr and weight decay per member
                shape = (-1,) + (1,) * (p.dim() - 1)
                p.sub_(lr.view(shape) * (p.grad + wd.view(shape) * p))
        train, since = train + torch.stack([losses.detach(), error(out.detach(), Y)], dim=1), since + 1


def parity(n: int, support: torch.Tensor, m: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`m` inputs uniform on {-1, +1}^n and their labels, the product of the `support` coordinates."""
    x = torch.randint(0, 2, (m, n), generator=g).float() * 2 - 1
    return x, x[:, support].prod(dim=1)


def init_mlp(n: int, w: int, g: torch.Generator) -> list[torch.Tensor]:
    """[W1 (w, n), b1 (w), W2 (1, w), b2 (1)] drawn as torch.nn.Linear draws them,
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), but from `g`."""
    def uniform(*shape, fan_in):
        return ((torch.rand(shape, generator=g) * 2 - 1) / math.sqrt(fan_in)).requires_grad_()

    return [uniform(w, n, fan_in=n), uniform(w, fan_in=n), uniform(1, w, fan_in=w), uniform(1, fan_in=w)]


def forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Scores (B,) of inputs x (B, n)."""
    W1, b1, W2, b2 = params
    return (torch.relu(x @ W1.T + b1) @ W2.T + b2).squeeze(-1)


def forward_many(params: list[torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Scores (P, B) of inputs X (P, B, n), member p with its own weights: `forward` as batched matmuls."""
    W1, b1, W2, b2 = params
    H = torch.relu(torch.bmm(X, W1.transpose(1, 2)) + b1.unsqueeze(1))
    return (torch.bmm(H, W2.transpose(1, 2)) + b2.unsqueeze(1)).squeeze(-1)


def hinge(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean hinge loss over the last axis."""
    return torch.relu(1 - out * y).mean(dim=-1)


def error(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of wrong signs over the last axis (`not > 0`: a NaN score counts as wrong)."""
    return (~(out * y > 0)).float().mean(dim=-1)


def evaluation(out, y, W1, support, train) -> dict[str, float | None]:
    """The metrics of one evaluation: test scores `out` against labels `y`, first-layer weights `W1`,
    and `train`, the mean minibatch loss and error since the last evaluation (None at step 0)."""
    test_error = float(error(out, y))
    column_norms = W1.pow(2).sum(dim=0)  # (n,): squared norm of each input's weights
    return {
        "train_loss": None if train is None else float(train[0]),
        "train_error": None if train is None else float(train[1]),
        "test_loss": float(hinge(out, y)),
        "test_error": test_error,
        "test_acc": 1.0 - test_error,
        "support_share": float(column_norms[support].sum() / column_norms.sum()),
    }

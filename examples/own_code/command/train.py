"""Online (n, k)-sparse parity learned by a 2-layer ReLU MLP with SGD and the hinge loss: a
standalone script that knows nothing of paretolab.

    python train.py --n 30 --k 3 --width 64 --lr 0.1 --seed 0 --max-steps 5000

It prints its metrics every --eval-every steps as lines paretolab reads when the script runs as a
sweep's command trial (`##paretolab {"step": ..., "samples": ..., "test_error": ...}`); run by hand
they are just printed. Under paretolab it also:
- keeps a checkpoint (model, optimizer, step, data generator) in $PARETOLAB_CHECKPOINT_DIR every
  --checkpoint-every steps, and resumes from it when it is there: a trial run again after being
  stopped goes on from its last checkpoint;
- stops (after saving its checkpoint) once the file $PARETOLAB_STOP_FILE exists: paretolab creates
  it when the trial has succeeded, reached max_steps, or the sweep is being interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import os

import torch

MARKER = "##paretolab "


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, kind, default in (("n", int, 30), ("k", int, 3), ("width", int, 64), ("lr", float, 0.1),
                                ("batch-size", int, 32), ("seed", int, 0), ("max-steps", int, 5000),
                                ("eval-every", int, 100), ("checkpoint-every", int, 500), ("test-size", int, 1000)):
        ap.add_argument(f"--{name}", type=kind, default=default)
    args = ap.parse_args()
    checkpoint = os.path.join(os.environ["PARETOLAB_CHECKPOINT_DIR"], "checkpoint.pt") \
        if os.environ.get("PARETOLAB_CHECKPOINT_DIR") else None
    stop_file = os.environ.get("PARETOLAB_STOP_FILE")

    torch.set_num_threads(1)  # one trial per core
    g = torch.Generator().manual_seed(args.seed)
    support = torch.randperm(args.n, generator=g)[:args.k]
    test_x, test_y = parity(args.n, support, args.test_size, g)
    model = torch.nn.Sequential(torch.nn.Linear(args.n, args.width), torch.nn.ReLU(), torch.nn.Linear(args.width, 1))
    for layer in (model[0], model[2]):  # nn.Linear's own law, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), drawn from g
        for p in layer.parameters():
            torch.nn.init.uniform_(p, -1 / math.sqrt(layer.in_features), 1 / math.sqrt(layer.in_features), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)

    def save(step: int) -> None:
        if checkpoint is not None:  # whole or not at all: a temporary file renamed over the old one
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                        "rng": g.get_state()}, checkpoint + ".tmp")
            os.replace(checkpoint + ".tmp", checkpoint)

    step = 0
    if checkpoint is not None and os.path.exists(checkpoint):
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["rng"])
        step = state["step"]  # paretolab re-emits the rows before it; the next line is a later step
    else:
        report(step=0, samples=0, **evaluate(model, test_x, test_y))
    while step < args.max_steps:
        x, y = parity(args.n, support, args.batch_size, g)
        loss = torch.relu(1 - model(x).squeeze(-1) * y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % args.eval_every == 0 or step == args.max_steps:
            report(step=step, samples=step * args.batch_size, train_loss=loss.item(), **evaluate(model, test_x, test_y))
            if stop_file is not None and os.path.exists(stop_file):
                save(step)
                return
        if step % args.checkpoint_every == 0:
            save(step)


def report(**row) -> None:
    """One metric line on stdout, flushed so that it is read as it happens."""
    print(MARKER + json.dumps(row), flush=True)


def parity(n: int, support: torch.Tensor, m: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`m` inputs uniform on {-1, +1}^n and their labels, the product of the `support` coordinates."""
    x = torch.randint(0, 2, (m, n), generator=g).float() * 2 - 1
    return x, x[:, support].prod(dim=1)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    out = model(x).squeeze(-1)
    error = float((~(out * y > 0)).float().mean())  # `not > 0`: a NaN score counts as wrong
    return {"test_loss": float(torch.relu(1 - out * y).mean()), "test_error": error, "test_acc": 1 - error}


if __name__ == "__main__":
    main()

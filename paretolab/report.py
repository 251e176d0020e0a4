"""Report a script's metrics to paretolab, when the script runs as a sweep's command trial.

Standard library only: copy this file next to your script if paretolab is not installed where the
script runs. Outside paretolab the same calls work: `report` prints its lines and returns False,
`config()` is empty.

    from paretolab.report import checkpoint_dir, config, report

    cfg = config()                                   # the trial's parameters, seed included
    for step in range(cfg.get("max_steps", 1000) + 1):
        ...                                          # train
        if step % 100 == 0:
            if report(step, samples=step * 32, test_error=err, loss=loss):
                break                                # paretolab asks the trial to stop: save, then exit

Each `report` prints one line to stdout, flushed:

    ##paretolab {"step": 100, "samples": 3200, "test_error": 0.2, "loss": 0.41}

`step` is an integer >= 0 that increases from line to line; `samples` (optional) the training
examples seen so far; every other key a metric, a number or null (NaN and Infinity mark a diverged
trial). A script in another language prints the same lines itself, flushing each; every other line
of stdout goes to the trial's log.

`report` returns True once the trial should stop (it succeeded and the spec stops on success, it
reached max_steps, it diverged or was pruned, or the sweep is being interrupted): the script then
saves its checkpoint, if it keeps one, and exits. One that keeps running is ended about ten seconds
later (SIGTERM, then SIGKILL).

A script that resumes from its own checkpoint in `checkpoint_dir()` continues its curve: paretolab
re-emits the rows of earlier attempts before the step of the first report after resuming.
"""

from __future__ import annotations

import json
import operator
import os
import sys

MARKER = "##paretolab "  # equal to paretolab.workers.command.MARKER; this file must stand alone


def report(step: int, samples: int | None = None, **metrics) -> bool:
    """Print one metric line for `step` (after `samples` training examples) and say whether to stop.

    Args:
        step: the training step, an integer >= 0, larger than the previous report's.
        samples: the training examples seen so far, or None.
        **metrics: name -> a number (a Python or numpy scalar, a one-element tensor) or None.

    Returns:
        True when paretolab asks the trial to stop (never outside paretolab).

    Raises:
        TypeError: a step, sample count or metric that is not a number.
        ValueError: a negative step or sample count.
    """
    row = {"step": _count(step, "step")}
    if samples is not None:
        row["samples"] = _count(samples, "samples")
    for name, value in metrics.items():
        if value is not None and isinstance(value, (str, bytes)):
            raise TypeError(f"report: metric {name!r} must be a number, got {value!r}")
        row[name] = None if value is None else float(value)
    sys.stdout.write(MARKER + json.dumps(row) + "\n")
    sys.stdout.flush()
    return should_stop()


def size(n_params: int | None = None, flops_per_sample: float | None = None) -> None:
    """Print the model's size: its parameter count and its training FLOPs per example (e.g. 6 x
    n_params for a vector input), recorded on the trial's row; `flops_per_sample` turns samples into
    the FLOPs of `flops_to_success`."""
    row = {k: v for k, v in (("n_params", n_params), ("flops_per_sample", flops_per_sample)) if v is not None}
    if row:
        sys.stdout.write(MARKER + json.dumps(row) + "\n")
        sys.stdout.flush()


def should_stop() -> bool:
    """Whether paretolab asks the trial to stop (what the last `report` answered, or a stop since)."""
    stop_file = os.environ.get("PARETOLAB_STOP_FILE")
    return bool(stop_file) and os.path.exists(stop_file)


def config() -> dict:
    """The trial's parameters (its seed, and max_steps when the spec sets it, included); {} outside paretolab."""
    return json.loads(os.environ.get("PARETOLAB_CONFIG", "{}"))


def checkpoint_dir() -> str | None:
    """The folder for the trial's checkpoint (it survives a retried or resumed trial); None outside
    paretolab or when the sweep keeps checkpoints in an object store (then the command's
    `{checkpoint_dir}` placeholder gives its URI)."""
    return os.environ.get("PARETOLAB_CHECKPOINT_DIR")


def workdir() -> str:
    """The trial's scratch folder, the script's working directory (removed once the trial has ended)."""
    return os.environ.get("PARETOLAB_WORKDIR") or os.getcwd()


def _count(value, what: str) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)  # an int, or a numpy integer; a float is refused
    except TypeError:
        raise TypeError(f"report: {what} must be an integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"report: {what} must be >= 0, got {value}")
    return value

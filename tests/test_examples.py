"""Every example spec answers a dry run, and a shrunken copy of its first trial really trains."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

import paretolab
from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec
from paretolab.workers.train import train

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))
SHRINK = {  # size argument -> an upper bound small enough for a CPU test, where the trial has it
    "length": 16, "test_length": 24, "train_size": 64, "n_layers": 1, "d_model": 16, "n_heads": 2,
    "hidden": 8, "width": 16,
}


def shrink(args):
    changes = {f.name: min(getattr(args, f.name), SHRINK[f.name]) for f in dataclasses.fields(args)
               if f.name in SHRINK and isinstance(getattr(args, f.name), int)}
    return dataclasses.replace(args, **changes)


def test_there_are_examples():
    assert {"quickstart.yaml", "parity_frontier.yaml"} <= {p.name for p in EXAMPLES} and len(EXAMPLES) >= 8


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_dry_runs_and_its_first_trial_trains(path, tmp_path, one_thread):
    summary = paretolab.run(path, store=tmp_path / "r", dry_run=True)
    assert summary.total > 0 and summary.first_configs
    first = next(expand(load_spec(path)))
    small = dataclasses.replace(first, task_args=shrink(first.task_args), model_args=shrink(first.model_args),
                                max_steps=3, eval=dataclasses.replace(first.eval, every=1, test_size=8))
    rows = list(train(small, 1))
    assert [r.step for r in rows] == [0, 1, 2, 3]


@pytest.mark.parametrize("kind, expected", [("tasks", {"sparse_parity", "flipflop", "automaton", "sparse_boolean",
                                                       "relu_teacher"}),
                                            ("models", {"mlp", "transformer", "lstm"})])
def test_cli_lists_plugins_with_their_defaults(kind, expected):
    import json

    out = subprocess.run(["paretolab", kind, "--format", "json"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r[kind[:-1]] for r in rows} >= expected
    if kind == "models":
        assert "width=100" in next(r for r in rows if r["model"] == "mlp")["parameters (defaults)"]

"""Specs in code: `paretolab.run` takes a dict of the YAML keys and `paretolab.sweep(**keys)` builds
one, checked exactly as the YAML file would be, with the same trial ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import paretolab
from paretolab.errors import SpecError
from paretolab.orchestrator.grid import expand

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def ids(sweep) -> list[str]:
    return [t.trial_id for t in expand(sweep)]


@pytest.mark.parametrize("name", ["quickstart.yaml", "flipflop_lstm_vs_transformer.yaml", "automata.yaml"])
def test_a_dict_gives_the_ids_of_its_yaml(name):
    path = EXAMPLES / name
    keys = yaml.safe_load(path.read_text())
    from_code = paretolab.sweep(**keys)
    assert ids(from_code) == ids(paretolab.load_spec(path))
    assert from_code.source.strip() and yaml.safe_load(from_code.source) == keys  # what the store keeps


def test_tuples_and_numpy_numbers_are_plain_values():
    keys = dict(sweep="s", task="sparse_parity", task_args={"n": 20, "k": 3}, model="mlp",
                grid={"width": (16, 32), "lr": np.array([0.1, 0.3]).tolist()}, seeds=np.int64(2), max_steps=np.int64(100))
    sweep = paretolab.sweep(**keys)
    assert dict(sweep.grid)["width"] == (16, 32) and sweep.seeds == (0, 1) and sweep.max_steps == 100


@pytest.mark.parametrize("keys, message", [
    (dict(sweep="s", task="sparse_parity", model="mlp", max_steps=-1), "<sweep()>: max_steps: expected an integer >= 1, got -1"),
    (dict(sweep="s", task="sparse_parity", model="mlp", max_steps=10, grid={"widht": [16]}), "<sweep()>: grid.widht: "),
    (dict(sweep="s", task="sparse_parity", model="mlp", max_steps=10, fixed={"lr": object()}), "<sweep()>: a value is not one a spec can hold"),
])
def test_errors_name_the_key(keys, message):
    with pytest.raises(SpecError) as e:
        paretolab.sweep(**keys)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_run_takes_a_dict(tmp_path):
    keys = yaml.safe_load((EXAMPLES / "quickstart.yaml").read_text())
    summary = paretolab.run(keys, store=tmp_path / "r", dry_run=True)
    assert (summary.mode, summary.total) == ("dry_run", 50)
    with pytest.raises(SpecError, match="^<dict>: max_steps: required key is missing"):
        paretolab.run({k: v for k, v in keys.items() if k != "max_steps"}, store=tmp_path / "r", dry_run=True)
    assert not (tmp_path / "r").exists()

"""Trial ids of fixed specs, pinned: a refactoring must not change them, since the store is a
cache keyed by them (a changed id reruns every stored trial and orphans its results).

The expected values were computed by the code before the vocabulary floor and the store component
were split out; they cover a built-in grid, task-specific model arguments on a model axis, your own
function (its file's hash and `version:`), and a command. If a change is meant to alter what a
trial computes, raise `workers.RESULT_VERSION` (built-in trials) and update these pins on purpose.
"""

from __future__ import annotations

import hashlib

import pytest

import paretolab
from paretolab.orchestrator.grid import expand

SPECS = {
    "parity.yaml": """\
sweep: parity
task: sparse_parity
task_args: {n: 20, k: 3}
model: mlp
grid:
  width: [16, 128]
  train_size: [null, 250, 1000]
  lr: [0.03, 0.1]
fixed: {batch_size: 32, weight_decay: 0.01, loss: hinge}
seeds: 3
max_steps: 5000
eval: {every: 100, test_size: 1000}
success: {metric: test_error, op: "<=", value: 0.1}
""",
    "flipflop.yaml": """\
sweep: flipflop
task: flipflop
task_args: {length: 64}
grid:
  model: [lstm, transformer]
  p_ignore: [0.8, 0.98]
model_args:
  lstm: {n_layers: 1, hidden: 64, lr: 0.003}
  transformer: {n_layers: 2, d_model: 64, n_heads: 4, lr: 0.001}
fixed: {batch_size: 16, optimizer: adamw}
seeds: 2
max_steps: 2000
eval: {every: 200, test_size: 200}
success: {metric: test_error, op: "<=", value: 0.01, stop_on_success: false}
""",
    "function.yaml": """\
sweep: function
trainable: train.py:main
version: "3"
fixed: {n: 40, batch_size: 32}
grid:
  width: [16, 64]
  lr: [0.01, 0.1]
seeds: 2
max_steps: 1000
success: {metric: test_error, op: "<=", value: 0.05}
""",
    "command.yaml": """\
sweep: command
command: [python, train.py, --width, "{width}", --lr, "{lr}", --seed, "{seed}"]
fixed: {n: 30}
grid:
  width: [32, 128]
  lr: [0.03, 0.1]
seeds: 2
success: {metric: test_error, op: "<=", value: 0.05}
""",
}
CODE = {"train.py": "def main(config, ctx):\n    ctx.report(step=0, test_error=1.0)\n"}

# spec file -> (number of trials, the first id, sha256 of the ids in grid order, one per line)
PINNED = {
    'parity.yaml': (36, 'a7342651eacdc783', '6eb34c33b5a2fbc4ffdf7ecd6d9f9809e1b1657e069fc25dbf8fb7909522db52'),
    'flipflop.yaml': (8, '6b33ca579b075f2e', 'bf6a645c94c8e633c7063a0f7067e1d2427cd12233b9e022ca2736bb3e3f88fa'),
    'function.yaml': (8, '086444383e4384f0', '20b5901f40a66202d2b4c8d3d53bb1b12f0d52694066dbeecccc9a5fd1e0aab5'),
    'command.yaml': (8, '3efe3de722934eed', 'db034925f0ec6e2c39b985d636e1323ed56438161b029a561787628fc80156f0'),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_trial_ids_are_unchanged(name, tmp_path):
    for file, text in CODE.items():
        (tmp_path / file).write_text(text)
    (tmp_path / name).write_text(SPECS[name])
    ids = [t.trial_id for t in expand(paretolab.load_spec(tmp_path / name))]
    n, first, digest = PINNED[name]
    assert (len(ids), ids[0], hashlib.sha256("\n".join(ids).encode()).hexdigest()) == (n, first, digest)


def test_the_pins_see_a_change_of_code(tmp_path):
    """The function's ids cover its file: the same spec with an edited train.py gets other ids."""
    (tmp_path / "train.py").write_text(CODE["train.py"] + "# edited\n")
    (tmp_path / "function.yaml").write_text(SPECS["function.yaml"])
    ids = [t.trial_id for t in expand(paretolab.load_spec(tmp_path / "function.yaml"))]
    assert ids[0] != PINNED["function.yaml"][1]

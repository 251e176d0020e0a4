"""The conformance test every registered task runs (small arguments; no Ray): the checks of the
shipped suite (`paretolab.testing.tasks`) on every built-in task, on the test plug-in's tasks and on
the plug-in task of docs/tasks_and_models.md; and that the suite finds a task that breaks the contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from paretolab.tasks.registry import BUILTIN, tasks
from paretolab.tasks.sparse_parity import SparseParity
from paretolab.testing import ConformanceError, check_task
from paretolab.testing import tasks as conformance

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {  # arguments that keep each built-in task tiny
    "sparse_parity": {"n": 10, "k": 2},
    "flipflop": {"length": 16},
    "automaton": {"automaton": "symmetric", "length": 8},
    "sparse_boolean": {"length": 8, "k": 2},
    "relu_teacher": {"d": 6, "k": 2},
    "lm": {"context": 16, "max_bytes": 2**16},
}
PLUGINS = {"exploding": {"n": 10, "k": 2, "explode_at": 100}, "poisoned": {"n": 10, "k": 2}}  # tests/plugins
DOCS = Path(__file__).resolve().parents[1] / "docs" / "tasks_and_models.md"


def small(name: str, **extra):
    """The checked small `Args` of the built-in task `name`, with `extra` arguments."""
    return conformance.task_args(tasks()[name], {**SMALL[name], **extra})


def test_every_builtin_is_covered():
    assert set(BUILTIN) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_contract(name):
    # relu_teacher's error is a relative MSE, not a fraction
    conformance.check_losses_and_metrics(tasks()[name], small(name), error_is_fraction=name != "relu_teacher")


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_is_determined_by_its_seed(name):
    conformance.check_seeded(tasks()[name], small(name))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_packed_loss_and_error_equal_the_members(name):
    conformance.check_packed_loss_and_error(tasks()[name], small(name))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_args_are_frozen_dataclasses_with_defaults(name):
    conformance.check_declaration(tasks()[name], name)


@pytest.mark.parametrize("name, extra", [(n, {}) for n in sorted(SMALL)] + [
    ("sparse_parity", {"train_size": 50}), ("sparse_parity", {"noise": 0.1})])
def test_packed_batches_equal_each_members_train_batch(name, extra):
    conformance.check_packed_batches(tasks()[name], small(name, **extra))


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_the_plugin_tasks_pass_the_whole_suite(name):
    assert name in tasks() and name not in BUILTIN  # registered through tests/plugins' entry point
    check_task(name, PLUGINS[name])


def test_the_documented_plugin_task_passes_the_whole_suite():
    """The `majority` task that docs/tasks_and_models.md shows a package adding."""
    (block,) = re.findall(r"```python\n(# mypkg/majority\.py\n.*?)```", DOCS.read_text(), re.S)
    namespace: dict = {}
    exec(compile(block, "mypkg/majority.py", "exec"), namespace)
    check_task(namespace["Majority"], {"n": 7})


class Unseeded(SparseParity):
    """Sparse parity whose training inputs come from torch's global generator, not the seed."""

    def train_batch(self, batch_size):
        x, y = super().train_batch(batch_size)
        return torch.randint(0, 2, x.shape).to(x.dtype) * 2 - 1, y


class PeekingEvaluation(SparseParity):
    """Sparse parity whose evaluation draws from the training stream."""

    def evaluate(self, forward, kind):
        self.train_batch(1)
        return super().evaluate(forward, kind)


class WrongPackedLoss(SparseParity):
    def packed_loss(self, out, y, kind):
        return super().packed_loss(out, y, kind) * 1.01


@pytest.mark.parametrize("cls, message", [
    (Unseeded, "one seed gave two training streams"),
    (PeekingEvaluation, "evaluate moved the training stream"),
    (WrongPackedLoss, "packed_loss differs from each member's loss"),
])
def test_the_suite_finds_a_task_that_breaks_the_contract(cls, message):
    with pytest.raises(ConformanceError, match=message):
        check_task(cls, SMALL["sparse_parity"])

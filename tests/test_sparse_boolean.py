"""Sparse Boolean functions of a sequence: labels against plain-Python definitions, the hidden
positions, reading the last position, and a tiny end-to-end training on CPU (fixed seeds)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec, parse_yaml
from paretolab.tasks.registry import tasks
from paretolab.tasks.sparse_boolean import FUNCTIONS, SparseBoolean, SparseBooleanArgs
from paretolab.workers.train import train

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    """Run these tiny models on one thread: on a loaded 2-core machine, torch's intra-op threads
    made the end-to-end tests 20x slower (53 s against 2.6 s, measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

BRUTE = {
    "parity": lambda bits: sum(bits) % 2,
    "and": lambda bits: int(all(bits)),
    "or": lambda bits: int(any(bits)),
    "majority": lambda bits: int(sum(bits) > len(bits) / 2),
}


def last_position_logits(labels: torch.Tensor, T: int, junk: float = 0.0) -> torch.Tensor:
    """`(B, T, 2)` logits that say `labels` at the last position and `junk` everywhere else."""
    out = torch.full((len(labels), T, 2), junk)
    out[:, -1] = torch.nn.functional.one_hot(labels, 2).float() * 10
    return out


@pytest.mark.parametrize("function", FUNCTIONS)
@pytest.mark.parametrize("vocab", [2, 6])
def test_labels_match_brute_force(function, vocab):
    task = SparseBoolean(SparseBooleanArgs(length=12, k=3, function=function, vocab=vocab), seed=7, test_size=10)
    x, y = task.train_batch(400)
    assert x.shape == (400, 12) and y.shape == (400,) and x.dtype == y.dtype == torch.int64
    assert int(x.min()) >= 0 and int(x.max()) == vocab - 1
    support = task.support.tolist()
    for row, label in zip(x.tolist(), y.tolist()):
        assert label == BRUTE[function]([row[i] % 2 for i in support])
    assert 0 < float(y.float().mean()) < 1  # both labels occur


def test_support_is_drawn_from_the_seed():
    supports = [tuple(SparseBoolean(SparseBooleanArgs(length=40, k=4), seed=s, test_size=1).support.tolist())
                for s in range(6)]
    assert supports[0] == tuple(SparseBoolean(SparseBooleanArgs(length=40, k=4), seed=0, test_size=1).support.tolist())
    assert len(set(supports)) == 6
    for s in supports:
        assert list(s) == sorted(set(s)) and len(s) == 4 and 0 <= s[0] and s[-1] < 40


def test_same_seed_same_data():
    a, b, c = (SparseBoolean(SparseBooleanArgs(), seed=s, test_size=50) for s in (1, 1, 2))
    xa, ya = a.train_batch(32)
    xb, yb = b.train_batch(32)
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and not torch.equal(xa, c.train_batch(32)[0])
    forward = lambda x: x.unsqueeze(-1).float().expand(*x.shape, 2) * torch.tensor([1.0, -1.0])  # noqa: E731
    assert a.evaluate(forward, "cross_entropy") == b.evaluate(forward, "cross_entropy")
    assert torch.equal(a.train_batch(32)[0], b.train_batch(32)[0])  # evaluating leaves the stream alone


def test_offline_batches_come_from_a_fixed_set():
    task = SparseBoolean(SparseBooleanArgs(length=20, train_size=9), seed=0, test_size=10)
    seen = {tuple(x.tolist()) for _ in range(30) for x in task.train_batch(16)[0]}
    assert len(seen) == 9


def test_only_the_last_position_is_read():
    task = SparseBoolean(SparseBooleanArgs(length=10, k=3), seed=0, test_size=300)
    x, y = task.train_batch(100)
    assert float(task.error(last_position_logits(y, 10, junk=float("nan")), y)) == 0.0
    assert float(task.error(last_position_logits(1 - y, 10), y)) == 1.0
    assert float(task.loss(last_position_logits(y, 10, junk=5.0), y, "cross_entropy")) < 1e-3
    nan = last_position_logits(y, 10)
    nan[:5, -1, 0] = float("nan")
    assert float(task.error(nan, y)) == pytest.approx(0.05)  # NaN is never right

    def oracle(x):
        labels = torch.tensor([BRUTE["parity"]([row[i] % 2 for i in task.support.tolist()]) for row in x.tolist()])
        return last_position_logits(labels, x.shape[1])

    perfect = task.evaluate(oracle, "cross_entropy")
    assert perfect["test_error"] == 0.0 and perfect["test_acc"] == 1.0 and perfect["test_loss"] < 1e-3
    assert set(perfect) == set(SparseBoolean.metrics)
    wrong = task.evaluate(lambda x: oracle(x).flip(-1), "cross_entropy")
    assert wrong["test_error"] == 1.0


@pytest.mark.parametrize("args, message", [
    (SparseBooleanArgs(length=4, k=5), "k must be between 1 and length=4"),
    (SparseBooleanArgs(k=0), "k must be between"),
    (SparseBooleanArgs(k=2, function="majority"), "majority needs an odd k"),
    (SparseBooleanArgs(function="xor"), "unknown function 'xor'; known: parity, and, or, majority"),
    (SparseBooleanArgs(vocab=3), "vocab must be even"),
    (SparseBooleanArgs(train_size=0), "train_size"),
])
def test_bad_args_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        args.check()


def test_registered_with_sequence_io():
    assert tasks()["sparse_boolean"] is SparseBoolean
    io = SparseBoolean.io(SparseBooleanArgs(length=16, vocab=4))
    assert (io.kind, io.input_dim, io.output_dim, io.length) == ("sequence", 4, 2, 16)


def test_tiny_transformer_learns_a_2_sparse_parity():
    (trial,) = expand(parse_yaml("""\
sweep: sb-tiny
task: sparse_boolean
task_args: {length: 8, k: 2}
model: transformer
model_args: {n_layers: 2, d_model: 32, n_heads: 2}
fixed: {lr: 0.003, batch_size: 64, optimizer: adamw}
seeds: [0]
max_steps: 300
eval: {every: 100, test_size: 500}
success: {metric: test_error, op: "<=", value: 0.02}
"""))
    gen, rows = train(trial, 1), []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert rows[0].values["test_error"] > 0.3
    assert result.status == "finished" and result.success and rows[-1].values["test_error"] <= 0.02


def test_example_spec_sweeps_length_and_train_size():
    trials = list(expand(load_spec(EXAMPLES / "variable_creation.yaml")))
    lengths = {dataclasses.asdict(t.task_args)["length"] for t in trials}
    sizes = {dataclasses.asdict(t.task_args)["train_size"] for t in trials}
    assert lengths == {8, 16, 32, 64} and None in sizes and len(sizes) > 3
    assert {t.model for t in trials} == {"transformer"}

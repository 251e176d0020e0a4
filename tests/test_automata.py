"""The automaton task: transition tables against brute-force simulations, group structure, sampling,
metrics, determinism, and one end-to-end trial of a tiny LSTM from a YAML spec.

The brute-force simulations below share nothing with `tasks/automata.py` but the documented
meaning of each input name and the state labels (`Semiautomaton.states`): they step through
each sequence in plain Python with their own group arithmetic (dict permutations, 2x2 complex
matrices for Q8) and compare the element they reach with the label of the predicted state id.
"""

from __future__ import annotations

import math
import random
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch

from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec, parse_yaml
from paretolab.tasks.automata import DEFAULT_N, Automaton, AutomatonArgs, automaton, simulate
from paretolab.tasks.registry import tasks
from paretolab.models.registry import models
from paretolab.workers.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).parent.parent / "examples" / "automata.yaml"

# ----------------------------------------------------------------- brute force, by input name


def cycle(*points: int) -> dict[int, int]:
    """The cycle (p1 p2 ... pm) in 1-based notation, as a dict of images."""
    return {a: b for a, b in zip(points, points[1:] + points[:1])}


def perm_step(p: dict[int, int], g: dict[int, int]) -> dict[int, int]:
    """p then g: i -> g(p(i)); points g does not mention are fixed."""
    return {i: g.get(p[i], p[i]) for i in p}


def perm_label(p: tuple[int, ...]) -> dict[int, int]:
    """A 0-based image tuple from the task as a 1-based dict."""
    return {i + 1: v + 1 for i, v in enumerate(p)}


QUAT = {"1": np.eye(2, dtype=complex), "i": np.array([[1j, 0], [0, -1j]]), "j": np.array([[0, 1], [-1, 0]], dtype=complex)}
QUAT["k"] = QUAT["i"] @ QUAT["j"]


def quat_matrix(q: tuple[int, ...]) -> np.ndarray:
    a, b, c, d = q
    return a * QUAT["1"] + b * QUAT["i"] + c * QUAT["j"] + d * QUAT["k"]


def brute_force(name: str, n: int | None, inputs: list[str]):
    """The list of states (in the test's own representation) after each input."""
    if name in ("parity", "cyclic"):
        m, s, out = (2 if name == "parity" else n), 0, []
        for a in inputs:
            s = (s + {"0": 0, "1": 1, "+0": 0, "+1": 1}[a]) % m
            out.append(s)
        return out
    if name == "quaternion":
        M, out = QUAT["1"], []
        for a in inputs:
            M = M @ QUAT[a]
            out.append(M)
        return out
    if name in ("gridworld", "flipflop"):
        s, out = 0, []
        for a in inputs:
            if a == "left":
                s = max(s - 1, 0)
            elif a == "right":
                s = min(s + 1, n - 1)
            elif a.startswith("write "):
                s = int(a.split()[1])
            out.append(s)
        return out
    gens = {"id": {}, "(1 2)": cycle(1, 2), "(1 2 3)": cycle(1, 2, 3), f"(1..{n})": cycle(*range(1, n + 1)),
            f"(2..{n})": cycle(*range(2, n + 1)),
            "r": {i + 1: (i + 1) % n + 1 for i in range(n)}, "s": {i + 1: (-i) % n + 1 for i in range(n)}}
    p, out = {i: i for i in range(1, n + 1)}, []
    for a in inputs:
        p = perm_step(p, gens[a])
        out.append(dict(p))
    return out


def same(name: str, label, state) -> bool:
    if name == "quaternion":
        return np.allclose(quat_matrix(label), state)
    if name in ("dihedral", "symmetric", "alternating"):
        return perm_label(label) == state
    return label == state


CASES = [("parity", None), ("cyclic", None), ("cyclic", 5), ("dihedral", None), ("dihedral", 3), ("dihedral", 8),
         ("quaternion", None), ("symmetric", None), ("symmetric", 4), ("alternating", None), ("alternating", 4),
         ("alternating", 6), ("gridworld", None), ("gridworld", 2), ("flipflop", None), ("flipflop", 5)]


@pytest.mark.parametrize("name,n", CASES)
def test_task_labels_equal_brute_force_simulation(name, n):
    task = Automaton(AutomatonArgs(automaton=name, n=n, length=40), seed=3, test_size=8)
    a = task.automaton
    size = n if n is not None else DEFAULT_N[name]
    for x, y in (task.train_batch(16), (task._long_x, task._long_y)):
        for xs, ys in zip(x.tolist(), y.tolist()):
            expected = brute_force(name, size, [a.inputs[i] for i in xs])
            assert all(same(name, a.states[q], s) for q, s in zip(ys, expected))


@pytest.mark.parametrize("name,n", CASES)
def test_simulate_equals_step_by_step_lookup_on_random_sequences(name, n):
    a = automaton(name, n)
    rng = random.Random(0)
    x = [[rng.randrange(len(a.inputs)) for _ in range(25)] for _ in range(10)]
    got = simulate(torch.tensor(a.delta), torch.tensor(x)).tolist()
    for xs, ys in zip(x, got):
        q, want = 0, []
        for i in xs:
            q = a.delta[q][i]
            want.append(q)
        assert ys == want


# ----------------------------------------------------------------- group structure

GROUPS = {("parity", None): 2, ("cyclic", 6): 6, ("cyclic", 7): 7, ("dihedral", 3): 6, ("dihedral", 4): 8,
          ("dihedral", 6): 12, ("dihedral", 9): 18, ("quaternion", None): 8, ("symmetric", 3): 6,
          ("symmetric", 4): 24, ("symmetric", 5): 120, ("symmetric", 6): 720, ("alternating", 3): 3,
          ("alternating", 4): 12, ("alternating", 5): 60, ("alternating", 6): 360}


def multiply(name: str, n: int | None):
    """The test's own product of two state labels, returned as a label."""
    if name in ("parity", "cyclic"):
        m = 2 if name == "parity" else n
        return lambda a, b: (a + b) % m
    if name == "quaternion":
        basis = {k: quat_matrix(k) for k in automaton("quaternion").states}
        return lambda a, b: next(k for k, M in basis.items() if np.allclose(M, basis[a] @ basis[b]))
    return lambda p, q: tuple(perm_step(perm_label(p), perm_label(q))[i + 1] - 1 for i in range(len(p)))


@pytest.mark.parametrize("name,n", list(GROUPS))
def test_group_axioms_and_order(name, n):
    a = automaton(name, n)
    elements = set(a.states)
    assert len(a.states) == len(elements) == GROUPS[(name, n)]
    mul = multiply(name, n)
    e = a.states[0]
    for g in a.states:
        assert mul(e, g) == g == mul(g, e)
        power, inverse = g, e  # g^m = e for some m <= |G|; then g^(m-1) is g's inverse
        for _ in range(len(elements)):
            if power == e:
                break
            power, inverse = mul(power, g), power
        assert power == e and inverse in elements and mul(g, inverse) == e == mul(inverse, g)
    if len(elements) <= 120:  # closure over all pairs (a few seconds beyond that)
        assert all(mul(g, h) in elements for g in a.states for h in a.states)
    if name == "alternating":
        assert all(_is_even(p) for p in a.states)


def _is_even(p: tuple[int, ...]) -> bool:
    return sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j]) % 2 == 0


@pytest.mark.parametrize("name,n", CASES + list(GROUPS))
def test_inputs_reach_every_state_and_input_0_is_a_no_op(name, n):
    a = automaton(name, n)
    seen, todo = {0}, deque([0])
    while todo:
        for r in a.delta[todo.popleft()]:
            if r not in seen:
                seen.add(r)
                todo.append(r)
    assert seen == set(range(len(a.states)))
    assert all(row[0] == q for q, row in enumerate(a.delta))
    if name not in ("gridworld", "flipflop"):  # a group acts by permutations
        assert all(sorted(a.delta[q][i] for q in range(len(a.states))) == list(range(len(a.states)))
                   for i in range(len(a.inputs)))


def test_table_step_is_right_multiplication_by_the_input():
    a = automaton("symmetric", 5)
    mul = multiply("symmetric", 5)
    gens = [a.states[a.delta[0][i]] for i in range(len(a.inputs))]
    for q, g in enumerate(a.states):
        assert [a.states[r] for r in a.delta[q]] == [mul(g, h) for h in gens]


# ----------------------------------------------------------------- arguments, sampling, metrics


@pytest.mark.parametrize("args,match", [
    (AutomatonArgs(automaton="parity", n=3), "no size"),
    (AutomatonArgs(automaton="quaternion", n=8), "no size"),
    (AutomatonArgs(automaton="dihedral", n=2), "3 <= n"),
    (AutomatonArgs(automaton="symmetric", n=8), "n <= 7"),
    (AutomatonArgs(automaton="tetris"), "unknown automaton 'tetris'; known: parity"),
    (AutomatonArgs(length=0), "length"),
    (AutomatonArgs(test_length=0), "test_length"),
    (AutomatonArgs(p_identity=1.0), "p_identity"),
    (AutomatonArgs(train_size=0), "train_size"),
])
def test_bad_arguments_are_refused_with_the_allowed_values(args, match):
    with pytest.raises(ValueError, match=match):
        args.check()


def test_io_has_room_for_the_longer_test():
    assert Automaton.io(AutomatonArgs("symmetric", length=50)).__dict__ == \
        {"kind": "sequence", "input_dim": 3, "output_dim": 120, "length": 100}
    assert Automaton.io(AutomatonArgs("flipflop", n=3, length=50, test_length=20)).length == 50
    assert Automaton.io(AutomatonArgs("quaternion")).output_dim == 8


def test_shapes_and_default_test_length():
    task = Automaton(AutomatonArgs("gridworld", length=30), seed=0, test_size=12)
    x, y = task.train_batch(5)
    assert x.shape == y.shape == (5, 30) and x.dtype == y.dtype == torch.long
    assert task._test_x.shape == (12, 30) and task._long_x.shape == (12, 60)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_p_identity_is_the_no_op_rate_and_the_rest_is_uniform(p):
    task = Automaton(AutomatonArgs("symmetric", length=200, p_identity=p), seed=1, test_size=1)
    counts = torch.bincount(task.train_batch(500)[0].reshape(-1), minlength=3).double() / 100_000
    assert abs(counts[0] - p) < 0.01
    assert abs(counts[1] - counts[2]) < 0.01


def test_default_inputs_are_uniform():
    task = Automaton(AutomatonArgs("flipflop", n=3), seed=1, test_size=1)
    counts = torch.bincount(task.train_batch(1000)[0].reshape(-1), minlength=4).double() / 100_000
    assert torch.allclose(counts, torch.full((4,), 0.25, dtype=torch.float64), atol=0.01)


def test_offline_batches_come_from_one_fixed_set():
    task = Automaton(AutomatonArgs("cyclic", length=10, train_size=7), seed=0, test_size=4)
    fixed = {tuple(r) for r in task._train_x.tolist()}
    for _ in range(5):
        x, y = task.train_batch(16)
        assert {tuple(r) for r in x.tolist()} <= fixed
        assert torch.equal(y, simulate(task.delta, x))


def test_same_seed_same_data_other_seed_other_data():
    args = AutomatonArgs("alternating", length=20)
    a, b, c = (Automaton(args, seed=s, test_size=50) for s in (4, 4, 5))
    assert torch.equal(a._test_x, b._test_x) and torch.equal(a._long_x, b._long_x)
    assert all(torch.equal(u, v) for u, v in zip(a.train_batch(8), b.train_batch(8)))
    assert not torch.equal(a._test_x, c._test_x)
    assert not torch.equal(a._test_x, a._long_x[:, :20])  # the long test is its own draw


def oracle(task: Automaton, corrupt_last: bool = False, nan: bool = False):
    """A perfect model (logits one-hot on the true state), optionally wrong at the last position."""
    def forward(x):
        y = simulate(task.delta, x)
        if corrupt_last:
            y[:, -1] = (y[:, -1] + 1) % len(task.automaton.states)
        out = torch.nn.functional.one_hot(y, len(task.automaton.states)).float() * 10
        if nan:
            out[:, 0, 0] = float("nan")
        return out
    return forward


def test_metrics_of_a_perfect_and_of_a_nearly_perfect_model():
    task = Automaton(AutomatonArgs("dihedral", length=16), seed=0, test_size=64)
    perfect = task.evaluate(oracle(task), "cross_entropy")
    assert set(perfect) == set(Automaton.metrics)
    assert perfect["test_error"] == 0 and perfect["test_acc"] == perfect["seq_acc"] == 1
    assert perfect["long_acc"] == perfect["long_seq_acc"] == 1 and perfect["test_loss"] < 1e-3
    last = task.evaluate(oracle(task, corrupt_last=True), "cross_entropy")
    assert last["test_error"] == pytest.approx(1 / 16) and last["seq_acc"] == 0
    assert last["long_acc"] == pytest.approx(1 - 1 / 32) and last["long_seq_acc"] == 0


def test_nan_outputs_are_wrong():
    task = Automaton(AutomatonArgs("parity", length=8), seed=0, test_size=32)
    m = task.evaluate(oracle(task, nan=True), "cross_entropy")
    assert m["test_error"] == pytest.approx(1 / 8) and m["seq_acc"] == 0 and math.isnan(m["test_loss"])


def test_evaluation_in_chunks_covers_every_sequence(monkeypatch):
    import paretolab.tasks.automata as mod

    task = Automaton(AutomatonArgs("gridworld", length=10), seed=0, test_size=45)
    calls = []
    forward = oracle(task)
    monkeypatch.setattr(mod, "EVAL_TOKENS", 100)  # 10 sequences of 10 (5 of 20) per call
    m = task.evaluate(lambda x: calls.append(x.shape[0]) or forward(x), "cross_entropy")
    assert m["test_acc"] == m["long_acc"] == 1
    assert calls == [10, 10, 10, 10, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5]


def test_packed_loss_and_error_equal_the_per_member_ones():
    task = Automaton(AutomatonArgs("quaternion", length=6), seed=0, test_size=1)
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(3, 4, 6, 8, generator=g), torch.randint(0, 8, (3, 4, 6), generator=g)
    assert torch.allclose(task.packed_loss(out, y, "cross_entropy"),
                          torch.stack([task.loss(out[i], y[i], "cross_entropy") for i in range(3)]))
    assert torch.equal(task.packed_error(out, y), torch.stack([task.error(out[i], y[i]) for i in range(3)]))


# ----------------------------------------------------------------- end to end


def test_registered_with_its_arguments_in_specs():
    assert tasks()["automaton"] is Automaton
    sweep = parse_yaml("""\
sweep: s
task: automaton
task_args: {length: 12}
model: lstm
grid:
  automaton: [parity, symmetric, gridworld]
seeds: 1
max_steps: 10
""")
    trials = list(expand(sweep))
    assert [t.task_args.automaton for t in trials] == ["parity", "symmetric", "gridworld"]
    assert trials[0].train.loss == "cross_entropy"


@pytest.mark.slow  # training
def test_tiny_lstm_learns_parity_end_to_end():
    sweep = parse_yaml("""\
sweep: tiny
task: automaton
task_args: {automaton: parity, length: 8}
model: lstm
model_args: {hidden: 16}
fixed: {lr: 0.03, optimizer: adam, batch_size: 32}
seeds: [0]
max_steps: 300
eval: {every: 25, test_size: 200}
success: {metric: test_acc, op: ">=", value: 0.99}
""")
    (trial,) = expand(sweep)
    gen, rows = train(trial, attempt=1), []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert rows[0].values["test_acc"] < 0.7  # chance is 1/2
    assert result.success and result.status == "finished"
    assert rows[-1].values["long_acc"] > 0.9  # recurrence carries over to length 16


def test_tiny_transformer_with_learned_positions_runs_the_long_test():
    task = Automaton(AutomatonArgs("symmetric", length=8), seed=0, test_size=16)
    io = Automaton.io(task.args)
    cls = models()["transformer"]
    model = cls(cls.Args(n_layers=1, d_model=16, n_heads=2, pos_emb="learned"), io, torch.Generator().manual_seed(0))
    m = task.evaluate(model.forward, "cross_entropy")
    assert all(math.isfinite(v) for v in m.values()) and 0 <= m["long_acc"] <= 1


def test_example_spec_expands():
    sweep = load_spec(EXAMPLE)
    trials = list(expand(sweep))
    assert trials and all(t.task == "automaton" for t in trials)

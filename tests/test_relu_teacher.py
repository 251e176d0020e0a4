"""The narrow ReLU teacher: labels against numpy, the teacher's law, the relative error, sampling,
determinism, and a small MLP student that learns k=2, d=8 through the real training loop."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from paretolab.orchestrator.grid import expand
from paretolab.spec import load_spec, parse_yaml
from paretolab.tasks.registry import tasks
from paretolab.tasks.relu_teacher import ReluTeacher, ReluTeacherArgs, relative_mse
from paretolab.workers.packed import pack_key, train_pack
from paretolab.workers.train import train
from paretolab.vocabulary.trial import Assignment, MetricRow

pytestmark = pytest.mark.usefixtures("one_thread")

EXAMPLE = Path(__file__).parent.parent / "examples" / "relu_teacher.yaml"


def numpy_labels(W: np.ndarray, lam: np.ndarray, x: np.ndarray) -> np.ndarray:
    """y = sum_i lam_i max(0, <w_i, x>), one example and one unit at a time."""
    y = np.zeros(len(x))
    for m, xm in enumerate(x):
        for w, l in zip(W, lam):
            y[m] += l * max(0.0, float(np.dot(w, xm)))
    return y


@pytest.mark.parametrize("args", [
    ReluTeacherArgs(d=8, k=2),
    ReluTeacherArgs(d=5, k=5, coefficients="signs"),
    ReluTeacherArgs(d=4, k=9, orthogonal=False, coefficients="random"),
])
def test_labels_equal_a_numpy_computation(args):
    task = ReluTeacher(args, seed=2, test_size=50)
    W, lam = task.W.double().numpy(), task.lam.double().numpy()
    for x, y in ((task._test_x, task._test_y), task.train_batch(20)):
        assert np.allclose(y.numpy(), numpy_labels(W, lam, x.double().numpy()), atol=1e-5)


def test_teacher_directions_and_coefficients():
    ortho = ReluTeacher(ReluTeacherArgs(d=8, k=5), seed=0, test_size=1)
    assert torch.allclose(ortho.W @ ortho.W.T, torch.eye(5), atol=1e-6)
    free = ReluTeacher(ReluTeacherArgs(d=8, k=12, orthogonal=False), seed=0, test_size=1)
    assert torch.allclose(free.W.norm(dim=1), torch.ones(12), atol=1e-6)
    assert torch.equal(ortho.lam, torch.ones(5))
    signs = ReluTeacher(ReluTeacherArgs(d=8, k=40, orthogonal=False, coefficients="signs"), seed=0, test_size=1)
    assert set(signs.lam.tolist()) == {-1.0, 1.0}
    rand = ReluTeacher(ReluTeacherArgs(d=8, k=40, orthogonal=False, coefficients="random"), seed=0, test_size=1)
    assert ((rand.lam.abs() >= 0.5) & (rand.lam.abs() <= 1.5)).all() and (rand.lam < 0).any() and (rand.lam > 0).any()


def arccos_variance(W: torch.Tensor, lam: torch.Tensor) -> float:
    """Var(y) in closed form: E[ReLU(u.x) ReLU(v.x)] = (sin t + (pi - t) cos t) / (2 pi) for unit u, v
    at angle t (Cho & Saul 2009, the degree-1 arc-cosine kernel), and E[ReLU(u.x)] = 1 / sqrt(2 pi)."""
    W, lam = W.double(), lam.double()
    t = torch.arccos((W @ W.T).clamp(-1, 1))
    K = (torch.sin(t) + (math.pi - t) * torch.cos(t)) / (2 * math.pi)
    return float(lam @ K @ lam - (lam.sum() / math.sqrt(2 * math.pi)) ** 2)


@pytest.mark.parametrize("args", [ReluTeacherArgs(d=8, k=2), ReluTeacherArgs(d=6, k=4, orthogonal=False, coefficients="random")])
def test_test_labels_have_the_teachers_variance(args):
    task = ReluTeacher(args, seed=1, test_size=40_000)
    assert float(task._test_y.var()) == pytest.approx(arccos_variance(task.W, task.lam), rel=0.03)
    if args.orthogonal and args.coefficients == "ones":  # independent units: k (1/2 - 1/(2 pi))
        assert arccos_variance(task.W, task.lam) == pytest.approx(args.k * (0.5 - 1 / (2 * math.pi)))


def test_relative_error_is_0_for_the_teacher_and_1_for_the_mean():
    task = ReluTeacher(ReluTeacherArgs(d=8, k=3), seed=0, test_size=500)
    perfect = task.evaluate(lambda x: (torch.relu(x @ task.W.T) @ task.lam).unsqueeze(1), "square")
    assert perfect == {"test_loss": 0.0, "test_error": 0.0, "test_rel_mse": 0.0}
    mean = task._test_y.mean()
    m = task.evaluate(lambda x: mean.expand(len(x), 1), "square")
    assert m["test_error"] == m["test_rel_mse"] == pytest.approx(1.0, rel=1e-5)
    assert m["test_loss"] == pytest.approx(float(task._test_y.var(correction=0)), rel=1e-5)


def test_batch_error_is_the_batchs_relative_mse_and_needs_two_examples():
    task = ReluTeacher(ReluTeacherArgs(d=4, k=2), seed=0, test_size=1)
    y = torch.tensor([1.0, 2.0, 3.0, 6.0])
    out = torch.tensor([[1.0], [2.0], [4.0], [6.0]])
    assert float(task.error(out, y)) == pytest.approx(0.25 / 3.5)
    with pytest.raises(ValueError, match="at least 2 examples, got 1"):
        task.error(out[:1], y[:1])


def test_nan_outputs_give_a_nan_error():
    task = ReluTeacher(ReluTeacherArgs(d=4, k=2), seed=0, test_size=16)
    m = task.evaluate(lambda x: torch.full((len(x), 1), float("nan")), "square")
    assert all(math.isnan(v) for v in m.values())  # the training loop marks the trial diverged


def test_packed_loss_and_error_equal_the_per_member_ones():
    task = ReluTeacher(ReluTeacherArgs(d=4, k=2), seed=0, test_size=1)
    g = torch.Generator().manual_seed(0)
    out, y = torch.randn(3, 10, 1, generator=g), torch.randn(3, 10, generator=g)
    assert torch.allclose(task.packed_loss(out, y, "square"), torch.stack([task.loss(out[i], y[i], "square") for i in range(3)]))
    assert torch.allclose(task.packed_error(out, y), torch.stack([task.error(out[i], y[i]) for i in range(3)]))
    assert torch.allclose(relative_mse(out.squeeze(-1), y), task.packed_error(out, y))


def test_training_noise_has_the_given_std_and_test_labels_are_clean():
    task = ReluTeacher(ReluTeacherArgs(d=6, k=2, noise=0.3, train_size=20_000), seed=0, test_size=100)
    clean = lambda x: torch.relu(x @ task.W.T) @ task.lam  # noqa: E731
    assert float((task._train_y - clean(task._train_x)).std()) == pytest.approx(0.3, rel=0.03)
    assert torch.equal(task._test_y, clean(task._test_x))


def test_offline_batches_come_from_one_fixed_set():
    task = ReluTeacher(ReluTeacherArgs(d=3, k=2, train_size=9), seed=0, test_size=4)
    fixed = {tuple(r) for r in task._train_x.tolist()}
    x, _ = task.train_batch(64)
    assert {tuple(r) for r in x.tolist()} <= fixed


def test_same_seed_same_teacher_and_data_other_seed_other():
    args = ReluTeacherArgs(d=8, k=3, coefficients="random")
    a, b, c = (ReluTeacher(args, seed=s, test_size=20) for s in (7, 7, 8))
    assert torch.equal(a.W, b.W) and torch.equal(a.lam, b.lam) and torch.equal(a._test_x, b._test_x)
    assert all(torch.equal(u, v) for u, v in zip(a.train_batch(5), b.train_batch(5)))
    assert not torch.equal(a.W, c.W) and not torch.equal(a._test_x, c._test_x)


@pytest.mark.parametrize("args,match", [
    (ReluTeacherArgs(d=0), "d must be"),
    (ReluTeacherArgs(k=0), "k must be"),
    (ReluTeacherArgs(d=3, k=4), "k <= d=3"),
    (ReluTeacherArgs(coefficients="gaussian"), "ones, signs, random"),
    (ReluTeacherArgs(noise=-1.0), "noise"),
    (ReluTeacherArgs(train_size=0), "train_size"),
])
def test_bad_arguments_are_refused(args, match):
    with pytest.raises(ValueError, match=match):
        args.check()


def test_io_and_registry():
    assert ReluTeacher.io(ReluTeacherArgs(d=12, k=3)).__dict__ == {"kind": "vector", "input_dim": 12, "output_dim": 1, "length": None}
    assert tasks()["relu_teacher"] is ReluTeacher


def run(spec: str):
    (trial,) = expand(parse_yaml(spec))
    return run_trial(trial)


def run_trial(trial):
    gen, rows = train(trial, attempt=1), []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            return rows, stop.value


@pytest.mark.slow  # training
@pytest.mark.parametrize("seed", [0, 1])
def test_mlp_student_learns_two_relus_in_eight_dimensions(seed):
    # Measured (Adam, lr 0.01, batch 64, width 16), seeds 0 and 1: test_rel_mse 1.2-2.1 at step 0,
    # 0.045-0.13 at step 50, 0.005-0.006 at step 150, 0.002-0.003 at step 200.
    rows, result = run(f"""\
sweep: student
task: relu_teacher
task_args: {{d: 8, k: 2}}
model: mlp
model_args: {{width: 16}}
fixed: {{lr: 0.01, optimizer: adam, batch_size: 64}}
seeds: [{seed}]
max_steps: 200
eval: {{every: 50, test_size: 1000}}
success: {{metric: test_rel_mse, op: "<=", value: 0.01, stop_on_success: false}}
""")
    assert result.status == "finished" and result.success and result.steps_to_success <= 150
    assert rows[0].values["test_rel_mse"] > 0.5
    assert rows[-1].step == 200 and rows[-1].values["test_rel_mse"] < 0.005
    assert rows[-1].values["train_error"] < 0.01
    assert rows[-1].values["test_error"] == rows[-1].values["test_rel_mse"]


@pytest.mark.slow  # training
def test_default_success_criterion_reads_test_error():
    rows, result = run("""\
sweep: default
task: relu_teacher
task_args: {d: 8, k: 2}
model: mlp
model_args: {width: 16}
fixed: {lr: 0.01, optimizer: adam, batch_size: 64}
seeds: [0]
max_steps: 300
eval: {every: 50, test_size: 500}
""")
    assert result.success and result.steps_to_success == next(r.step for r in rows if r.values["test_error"] <= 0.1)


@pytest.mark.slow  # training
def test_packed_members_follow_their_solo_curves():
    trials = list(expand(parse_yaml("""\
sweep: packed
task: relu_teacher
task_args: {d: 8, k: 2}
model: mlp
model_args: {width: 16}
grid:
  train_size: [null, 500]
fixed: {lr: 0.05, batch_size: 32}
seeds: 2
max_steps: 100
eval: {every: 50, test_size: 300}
success: {stop_on_success: false}
""")))
    assert len({pack_key(t) for t in trials}) == 1  # seeds and train_size may differ inside a pack
    packed: dict[str, list[dict]] = {}
    for r in train_pack([Assignment(t, 1) for t in trials]):
        if isinstance(r, MetricRow):
            packed.setdefault(r.trial_id, []).append(r.values)
    for t in trials:
        solo = [r.values for r in run_trial(t)[0]]
        assert len(solo) == len(packed[t.trial_id]) == 3
        for a, b in zip(solo, packed[t.trial_id]):
            assert all(a[k] == b[k] if a[k] is None else a[k] == pytest.approx(b[k], rel=1e-4) for k in a)


def test_example_spec_expands():
    trials = list(expand(load_spec(EXAMPLE)))
    assert trials and all(t.task == "relu_teacher" and t.model_args.width >= t.task_args.k for t in trials)

"""The training loop, sparse parity and the MLP on tiny problems (n <= 20, a few hundred steps, CPU).

Numbers that depend on the random draw (how fast a seed learns) use fixed seeds and loose bounds;
what must hold exactly (determinism, bookkeeping of steps, samples and FLOPs) is checked exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings

import pytest
import torch

from paretolab.orchestrator.grid import expand
from paretolab.spec import parse_yaml
from paretolab.tasks.base import IO
from paretolab.tasks.seeding import generator
from paretolab.tasks.sparse_parity import SparseParity, SparseParityArgs
from paretolab.vocabulary.success import Success
from paretolab.workers import train as train_module
from paretolab.models.registry import MLP, MLPArgs
from paretolab.workers.schedule import lr_factor
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN, trial_row
from paretolab.workers.train import train
from paretolab.vocabulary.trial import EvalArgs, MetricRow, TrainArgs, TrialConfig, TrialResult

pytestmark = pytest.mark.usefixtures("one_thread")


def config(seed: int = 0, n: int = 10, k: int = 2, width: int = 64, lr: float = 0.1, batch_size: int = 32,
           max_steps: int = 300, every: int = 25, test_size: int = 500, stop: bool = True, target: float = 0.1,
           train_size: int | None = None, noise: float = 0.0, loss: str = "hinge", optimizer: str = "sgd",
           init: str = "dense", sparsity: int | None = None, depth: int = 2, schedule: str = "constant",
           warmup_steps: int = 0, precision: str = "fp32") -> TrialConfig:
    """A trial built straight from the dataclasses (the id is only a label here)."""
    return TrialConfig(
        trial_id=f"test-{seed}", task="sparse_parity",
        task_args=SparseParityArgs(n=n, k=k, train_size=train_size, noise=noise),
        model="mlp", model_args=MLPArgs(width=width, init=init, sparsity=sparsity, depth=depth),
        train=TrainArgs(lr=lr, batch_size=batch_size, loss=loss, optimizer=optimizer, schedule=schedule,
                        warmup_steps=warmup_steps, precision=precision),
        seed=seed, max_steps=max_steps, eval=EvalArgs(every=every, test_size=test_size),
        success=Success(metric="test_error", op="<=", value=target, stop_on_success=stop),
    )


def run(trial: TrialConfig, attempt: int = 1) -> tuple[list[MetricRow], TrialResult]:
    """Drain the generator: its rows, and the result it returns through StopIteration."""
    gen = train(trial, attempt)
    rows = []
    while True:
        try:
            rows.append(next(gen))
        except StopIteration as stop:
            return rows, stop.value


def curve(rows: list[MetricRow]) -> list[tuple]:
    """Everything of the rows but the wall clock."""
    return [(r.trial_id, r.attempt, r.step, r.samples, r.values) for r in rows]


def parity(x: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    return x[:, support].prod(dim=1)


# --------------------------------------------------------------- determinism


def test_same_config_gives_bit_identical_rows():
    trial = config(seed=3, n=14, k=3, width=32, max_steps=200, every=20, stop=False)
    rows_a, result_a = run(trial)
    rows_b, result_b = run(trial)
    assert curve(rows_a) == curve(rows_b)  # exact float equality, not approx
    assert [r.step for r in rows_a] == list(range(0, 201, 20))
    for field in ("status", "steps", "samples", "success", "steps_to_success", "final", "n_params"):
        assert getattr(result_a, field) == getattr(result_b, field)


def test_different_seeds_give_different_curves():
    a, _ = run(config(seed=0, max_steps=100, stop=False))
    b, _ = run(config(seed=1, max_steps=100, stop=False))
    assert [r.step for r in a] == [r.step for r in b]
    assert all(ra.values != rb.values for ra, rb in zip(a, b))


def test_trial_from_yaml_spec_matches_direct_config():
    sweep = parse_yaml("""\
sweep: tiny
task: sparse_parity
task_args: {n: 10, k: 2}
model: mlp
model_args: {width: 64}
fixed: {lr: 1e-1, batch_size: 32}
seeds: [4]
max_steps: 60
eval: {every: 20, test_size: 500}
success: {stop_on_success: false}
""")
    (trial,) = expand(sweep)
    direct = config(seed=4, max_steps=60, every=20, stop=False)
    rows_spec, result_spec = run(trial)
    rows_direct, _ = run(direct)
    assert [(r.step, r.values) for r in rows_spec] == [(r.step, r.values) for r in rows_direct]
    assert all(r.trial_id == trial.trial_id for r in rows_spec) and result_spec.trial_id == trial.trial_id


def test_rows_carry_attempt_and_samples():
    rows, result = run(config(max_steps=30, every=10, batch_size=8, stop=False), attempt=3)
    assert [r.step for r in rows] == [0, 10, 20, 30]
    assert [r.samples for r in rows] == [0, 80, 160, 240]
    assert {r.attempt for r in rows} == {3} and result.attempt == 3
    assert rows[0].values["train_loss"] is None  # nothing trained yet at step 0
    assert all(math.isfinite(r.values["train_loss"]) for r in rows[1:])
    assert set(rows[0].values) == {"train_loss", "train_error", "test_loss", "test_error", "test_acc"}
    assert rows[0].values["train_error"] is None and 0 <= rows[-1].values["train_error"] <= 1
    assert all(r.wall_s >= 0 for r in rows)
    assert [r.wall_s for r in rows] == sorted(r.wall_s for r in rows)


def test_last_step_is_evaluated_when_not_a_multiple_of_every():
    rows, result = run(config(max_steps=23, every=10, stop=False))
    assert [r.step for r in rows] == [0, 10, 20, 23]
    assert (result.status, result.steps, result.samples) == ("finished", 23, 23 * 32)


# --------------------------------------------------------------- learning and success bookkeeping


def test_online_parity_is_learned_and_stops_at_first_success():
    trial = config(seed=0, n=10, k=2, width=64, lr=0.1, max_steps=1000, every=25)
    rows, result = run(trial)
    assert result.status == "finished" and result.success
    assert rows[-1].values["test_error"] <= 0.1
    assert all(r.values["test_error"] > 0.1 for r in rows[:-1])  # the first eval where it holds
    assert result.steps < trial.max_steps
    assert result.steps_to_success == result.steps == rows[-1].step
    assert result.samples_to_success == result.samples == result.steps * 32
    n_params = 64 * 10 + 64 + 64 + 1
    assert result.n_params == n_params
    assert result.flops_to_success == FLOPS_PER_PARAM_PER_TOKEN * n_params * result.samples_to_success
    assert result.flops_to_success == 6 * n_params * result.steps * 32
    assert result.final == rows[-1].values
    assert result.stopped_at_success  # so its final metrics are those of its first success


def test_without_stop_on_success_runs_to_max_steps_and_keeps_first_success():
    stopped_rows, stopped = run(config(seed=0, max_steps=300, every=25))
    rows, result = run(config(seed=0, max_steps=300, every=25, stop=False))
    assert result.steps == 300 and rows[-1].step == 300
    assert result.success and result.steps_to_success == stopped.steps_to_success
    assert curve(rows[: len(stopped_rows)]) == curve(stopped_rows)  # stopping does not change the curve
    assert result.samples_to_success == stopped.samples_to_success
    assert result.flops_to_success == stopped.flops_to_success
    assert stopped.stopped_at_success and not result.stopped_at_success  # this one's are at max_steps


def test_the_trials_row_names_final_metrics_and_whether_success_stopped_the_trial():
    trial = config(seed=0, max_steps=300, every=25)
    for stop in (True, False):
        rows, result = run(dataclasses.replace(trial, success=dataclasses.replace(trial.success, stop_on_success=stop)))
        row = trial_row(trial, result, "n0", len(rows))
        assert set(result.final) == {"train_loss", "train_error", "test_loss", "test_error", "test_acc"}
        finals = {k: row[k] for k in row if k.startswith("final_")}
        assert finals == {f"final_{m}": v for m, v in rows[-1].values.items()}
        assert not set(result.final) & set(row)  # the curve's names are the metrics table's alone
        assert row["stopped_at_success"] is stop and row["success"]
        assert (row["steps"] < 300) is stop and row["final_test_error"] == rows[-1].values["test_error"]


def test_unreachable_target_is_not_success():
    _, result = run(config(max_steps=50, every=25, target=-1.0))
    assert result.status == "finished" and not result.success
    assert result.steps_to_success is None and result.samples_to_success is None
    assert result.flops_to_success is None
    assert result.steps == 50 and not result.stopped_at_success


# --------------------------------------------------------------- offline, noise, sparse init


def test_offline_draws_batches_from_one_fixed_set():
    args = SparseParityArgs(n=16, k=3, train_size=12)
    task = SparseParity(args, seed=5, test_size=10)
    seen = set()
    for _ in range(50):
        x, y = task.train_batch(32)
        assert torch.equal(y, parity(x, task.support))
        seen.update(tuple(row) for row in x.int().tolist())
    assert len(seen) == 12  # 1600 draws with replacement from 12 points cover them all

    again = SparseParity(args, seed=5, test_size=10)
    again_seen = {tuple(row) for _ in range(50) for row in again.train_batch(32)[0].int().tolist()}
    assert again_seen == seen  # the same seed gives the same training set

    online = SparseParity(SparseParityArgs(n=16, k=3), seed=5, test_size=10)
    online_seen = {tuple(row) for _ in range(50) for row in online.train_batch(32)[0].int().tolist()}
    assert len(online_seen) > 1000  # fresh points every batch (2^16 possible)


def test_offline_training_memorizes_a_small_set():
    # 24 points of a 3-parity in 20 dimensions: the net fits them but cannot generalize.
    rows, result = run(config(seed=1, n=20, k=3, width=64, train_size=24, max_steps=400, every=100,
                              stop=False, lr=0.1))
    assert result.status == "finished" and not result.success
    assert rows[-1].values["train_loss"] < 0.05
    assert rows[-1].values["test_error"] > 0.3


def test_noise_flips_training_labels_at_the_given_rate():
    args = SparseParityArgs(n=10, k=2, noise=0.2)
    task = SparseParity(args, seed=0, test_size=1000)
    flips, total = 0, 0
    for _ in range(100):
        x, y = task.train_batch(200)
        flips += int((y != parity(x, task.support)).sum())
        total += len(y)
    rate = flips / total
    sigma = math.sqrt(0.2 * 0.8 / total)  # about 0.0028
    assert abs(rate - 0.2) < 4 * sigma
    # the test set is clean: the true parity makes no error on it
    metrics = task.evaluate(lambda x: parity(x, task.support).unsqueeze(1), "hinge")
    assert metrics["test_error"] == 0.0 and metrics["test_acc"] == 1.0


def test_no_noise_means_no_flipped_label():
    task = SparseParity(SparseParityArgs(n=10, k=2), seed=0, test_size=10)
    x, y = task.train_batch(5000)
    assert torch.equal(y, parity(x, task.support))


def test_offline_noise_is_fixed_per_example():
    # n=24: 400 draws from 2^24 inputs never repeat, so each input has one (possibly flipped) label
    task = SparseParity(SparseParityArgs(n=24, k=2, train_size=400, noise=0.25), seed=2, test_size=10)
    label_of: dict[tuple, float] = {}
    flipped = 0
    for _ in range(40):
        x, y = task.train_batch(100)
        for row, label, clean in zip(x.int().tolist(), y.tolist(), parity(x, task.support).tolist()):
            assert label_of.setdefault(tuple(row), label) == label  # a noisy label never changes
            flipped += label != clean
    assert len(label_of) <= 400
    assert 0.15 < flipped / 4000 < 0.35


def test_sparse_init_gives_each_neuron_exactly_s_inputs():
    g = generator(0, "init")
    model = MLP(MLPArgs(width=64, init="sparse", sparsity=2), IO("vector", 20, 1), g=g)
    W1 = model.params[0].detach()
    assert W1.shape == (64, 20)
    assert ((W1 != 0).sum(dim=1) == 2).all()
    assert (W1.abs() <= 1 / math.sqrt(2)).all()  # U(-1/sqrt(s), 1/sqrt(s)) on the kept inputs
    assert len({tuple(row.nonzero().flatten().tolist()) for row in W1}) > 10  # supports differ by neuron


def test_dense_init_uses_every_input():
    model = MLP(MLPArgs(width=32), IO("vector", 20, 1), g=generator(0, "init"))
    W1, b1, W2, b2 = (p.detach() for p in model.params)
    assert ((W1 != 0).sum(dim=1) == 20).all()
    assert (W1.abs() <= 1 / math.sqrt(20)).all() and (W2.abs() <= 1 / math.sqrt(32)).all()
    assert model.n_params == 32 * 20 + 32 + 32 + 1
    assert all(p.requires_grad and p.is_leaf for p in model.params)
    assert model.forward(torch.ones(5, 20)).shape == (5, 1)


def test_sparse_init_stays_sparse_through_the_trial_seed():
    # the same init through the training loop's generator: a trial with sparse init starts sparse
    a = MLP(MLPArgs(width=16, init="sparse", sparsity=3), IO("vector", 10, 1), generator(7, "init"))
    b = MLP(MLPArgs(width=16, init="sparse", sparsity=3), IO("vector", 10, 1), generator(7, "init"))
    assert all(torch.equal(p, q) for p, q in zip(a.params, b.params))
    rows, result = run(config(seed=7, width=16, init="sparse", sparsity=3, max_steps=20, every=10, stop=False))
    assert result.status == "finished" and len(rows) == 3


def test_evaluate_does_not_shift_the_training_stream():
    args = SparseParityArgs(n=10, k=2)
    a = SparseParity(args, seed=3, test_size=100)
    b = SparseParity(args, seed=3, test_size=100)
    a.train_batch(16)
    b.train_batch(16)
    b.evaluate(lambda x: x[:, :1], "square")
    xa, ya = a.train_batch(16)
    xb, yb = b.train_batch(16)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


# --------------------------------------------------------------- divergence


def test_exploding_lr_with_square_loss_diverges():
    rows, result = run(config(lr=1e6, loss="square", width=32, max_steps=200, every=10))
    assert result.status == "diverged"
    assert not result.success and result.steps_to_success is None
    assert result.steps < 200
    assert not math.isfinite(rows[-1].values["train_loss"])
    assert result.final == rows[-1].values and not result.stopped_at_success


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nan_weights_are_diverged_not_success(optimizer):
    # One step at lr 1e30 turns the weights into inf/NaN while the last training loss, computed
    # before that step, is still finite; the NaN outputs must not count as correct predictions.
    rows, result = run(config(lr=1e30, loss="square", width=32, max_steps=50, every=1, optimizer=optimizer))
    assert result.status == "diverged"
    assert not result.success and result.steps_to_success is None
    assert all(r.values["test_error"] > 0.1 for r in rows)


def test_nan_outputs_count_as_errors():
    task = SparseParity(SparseParityArgs(n=10, k=2), seed=0, test_size=200)
    metrics = task.evaluate(lambda x: torch.full((len(x), 1), float("nan")), "hinge")
    assert metrics["test_error"] == 1.0 and metrics["test_acc"] == 0.0
    assert math.isnan(metrics["test_loss"])


# --------------------------------------------------------------- learning-rate schedules


@pytest.mark.parametrize("step, max_steps, schedule, warmup_steps, expected", [
    (0, 100, "constant", 0, 1.0),
    (99, 100, "constant", 0, 1.0),
    (0, 100, "constant", 4, 1 / 5),  # warmup (step + 1) / (warmup_steps + 1): 0.2, 0.4, 0.6, 0.8
    (1, 100, "constant", 4, 2 / 5),
    (3, 100, "constant", 4, 4 / 5),
    (4, 100, "constant", 4, 1.0),
    (0, 10, "linear", 0, 1.0),
    (5, 10, "linear", 0, 0.5),
    (9, 10, "linear", 0, 0.1),  # the last update is small, not 0
    (10, 10, "linear", 0, 0.0),
    (15, 10, "linear", 0, 0.0),  # past max_steps: clamped
    (1, 12, "linear", 2, 2 / 3),
    (2, 12, "linear", 2, 1.0),  # decay from the end of warmup: p = (step - 2) / 10
    (7, 12, "linear", 2, 0.5),
    (11, 12, "linear", 2, 0.1),
    (0, 4, "cosine", 0, 1.0),
    (1, 4, "cosine", 0, (1 + math.sqrt(0.5)) / 2),  # (1 + cos(pi / 4)) / 2 = 0.8536
    (2, 4, "cosine", 0, 0.5),
    (3, 4, "cosine", 0, (1 - math.sqrt(0.5)) / 2),  # 0.1464
    (4, 4, "cosine", 0, 0.0),
    (7, 12, "cosine", 2, 0.5),
    (5, 4, "cosine", 10, 6 / 11),  # warmup longer than the run: it never ends
])
def test_lr_factor_by_hand(step, max_steps, schedule, warmup_steps, expected):
    assert math.isclose(lr_factor(step, max_steps, schedule, warmup_steps), expected, abs_tol=1e-12)


def test_lr_factor_refuses_an_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'step'; known: constant, linear, cosine"):
        lr_factor(0, 10, "step", 0)


@pytest.mark.parametrize("args, message", [
    (TrainArgs(warmup_steps=-1), "warmup_steps must be >= 0, got -1"),
    (TrainArgs(schedule="step"), "schedule must be one of constant, linear, cosine; got 'step'"),
    (TrainArgs(precision="fp16"), "precision must be fp32, bf16 or tf32, got 'fp16'"),
])
def test_train_args_check(args, message):
    with pytest.raises(ValueError, match=message):
        args.check()


def test_the_loop_asks_the_schedule_at_every_step(monkeypatch):
    seen = []
    monkeypatch.setattr(train_module, "lr_factor", lambda *args: seen.append(args) or lr_factor(*args))
    run(config(max_steps=30, every=10, stop=False, schedule="cosine", warmup_steps=5))
    assert seen == [(step, 30, "cosine", 5) for step in range(30)]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_zero_factor_freezes_the_weights(monkeypatch, optimizer):
    # The factor reaches the optimizer: at lr * 0 no step moves the weights, so no metric moves.
    monkeypatch.setattr(train_module, "lr_factor", lambda *args: 0.0)
    rows, _ = run(config(max_steps=30, every=10, stop=False, optimizer=optimizer))
    assert all(r.values["test_loss"] == rows[0].values["test_loss"] for r in rows)


def test_a_decay_without_warmup_starts_like_constant():
    # The first update of `linear` is at factor 1, bit for bit the constant schedule's; the second is not.
    constant, _ = run(config(max_steps=4, every=1, stop=False))
    linear, _ = run(config(max_steps=4, every=1, stop=False, schedule="linear"))
    assert [r.values for r in linear[:2]] == [r.values for r in constant[:2]]
    assert linear[2].values["test_loss"] != constant[2].values["test_loss"]


# --------------------------------------------------------------- precision


def test_bf16_on_cpu_trains_in_fp32():
    # bf16 autocast applies on CUDA only (workers.train.autocast): on a CPU the curve is fp32's, bit for bit.
    fp32, result_fp32 = run(config(seed=2, max_steps=60, every=20, stop=False))
    bf16, result_bf16 = run(config(seed=2, max_steps=60, every=20, stop=False, precision="bf16"))
    assert curve(bf16) == curve(fp32)
    assert result_bf16.final == result_fp32.final


def test_bf16_autocast_is_for_cuda_devices_only():
    assert isinstance(train_module.autocast("bf16", "cpu"), contextlib.nullcontext)
    assert isinstance(train_module.autocast("fp32", "cuda:0"), contextlib.nullcontext)
    with warnings.catch_warnings():  # without CUDA, torch builds it disabled and warns
        warnings.simplefilter("ignore")
        ctx = train_module.autocast("bf16", "cuda:0")
    assert isinstance(ctx, torch.autocast) and ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16


def test_tf32_is_switched_on_for_a_cuda_trial_and_restored_after():
    m, c = torch.backends.cuda.matmul, torch.backends.cudnn
    before = (m.fp32_precision, c.fp32_precision)
    with train_module.matmul_precision("tf32", "cuda:0"):  # settable without a GPU; what CUDA kernels read
        assert (m.fp32_precision, c.fp32_precision) == ("tf32", "tf32")
    assert (m.fp32_precision, c.fp32_precision) == before
    for precision, device in (("tf32", "cpu"), ("fp32", "cuda:0"), ("bf16", "cuda:0")):
        with train_module.matmul_precision(precision, device):
            assert (m.fp32_precision, c.fp32_precision) == before


def test_tf32_trials_run_in_fp32_on_cpu_through_a_worker(ray_cluster, tmp_path, write_spec):
    import paretolab

    curves = {}
    for precision in ("fp32", "tf32"):
        spec = write_spec(tmp_path, name=precision, widths="[16]", seeds=2, max_steps=100,
                          extra="resources: {pack_size: 1}\n").read_text()
        spec = spec.replace("fixed: {lr: 0.1, batch_size: 32}", f"fixed: {{lr: 0.1, batch_size: 32, precision: {precision}}}")
        (tmp_path / f"{precision}.yaml").write_text(spec)
        paretolab.run(tmp_path / f"{precision}.yaml", store=tmp_path / precision, workers=1)
        curves[precision] = paretolab.open_store(tmp_path / precision).query(
            "SELECT t.seed, m.step, m.test_loss FROM metrics m JOIN trials t USING (trial_id) ORDER BY t.seed, m.step").to_pylist()
    assert curves["tf32"] == curves["fp32"] and len(curves["fp32"]) > 2


# --------------------------------------------------------------- depth


def test_a_deeper_mlp_learns_parity():
    trial = config(seed=0, n=10, k=2, width=64, depth=3, max_steps=1500, every=50)
    rows, result = run(trial)
    assert result.success and rows[-1].values["test_error"] <= 0.1
    assert result.n_params == 64 * 10 + 64 + 64 * 64 + 64 + 64 + 1


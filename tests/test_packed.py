"""Packed training: members of a pack give their solo curves, end on their own, fail on their own."""

from __future__ import annotations

import math
import os
import signal

import pytest

import paretolab
from paretolab.orchestrator.grid import expand
from paretolab.orchestrator.events import Observer
from paretolab.spec import parse_yaml
from paretolab.workers.packed import pack_key
from paretolab.vocabulary.trial import MetricRow
from support import packed, solo

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """\
sweep: pack
task: sparse_parity
task_args: {{n: 12, k: 3}}
model: mlp
grid:
  width: [32]
  train_size: [null, 300]
  lr: [0.1, 0.03]
zip: {{init: [dense, sparse], sparsity: [null, 2]}}
fixed: {{weight_decay: 0.01, momentum: {momentum}}}
seeds: 2
max_steps: {max_steps}
eval: {{every: 25, test_size: 256}}
success: {{metric: test_error, op: "<=", value: {target}}}
"""


def trials(momentum=0.0, max_steps=300, target=0.1, extra=""):
    return list(expand(parse_yaml(SPEC.format(momentum=momentum, max_steps=max_steps, target=target) + extra)))


def packed_against_solo(ts):
    """Train `ts` as one pack and each alone; check every member's curve against its solo curve,
    and yield (packed result, solo result) per trial."""
    rows, results = packed(ts)
    for t in ts:
        solo_rows, solo_result = solo(t)
        mine = [r for r in rows if r.trial_id == t.trial_id]
        assert len(mine) == len(solo_rows)
        for a, b in zip(mine, solo_rows):
            assert_close(a, b)
        yield results[t.trial_id], solo_result


def assert_close(a: MetricRow, b: MetricRow):
    """Equal up to floating-point rounding: losses to 1e-3; error rates to a few flipped predictions
    (batched and plain matmuls round differently, and hundreds of SGD steps can flip a borderline
    prediction: 1/256 of the test set, 1/800 of the minibatches between evaluations)."""
    assert (a.trial_id, a.step, a.samples) == (b.trial_id, b.step, b.samples)
    for k, v in a.values.items():
        w = b.values[k]
        tol = 0.012 if "error" in k or "acc" in k else 1e-3
        assert (v is None and w is None) or math.isclose(v, w, rel_tol=1e-3, abs_tol=tol), (k, v, w, a.step)


@pytest.mark.parametrize("momentum", [0.0, 0.9, "0, optimizer: adam", "0, optimizer: adamw"])  # into `fixed`
def test_members_follow_their_solo_curves(momentum):
    ts = trials(momentum=momentum)  # 16 members: seeds, train sizes, lrs, dense and sparse init
    assert len({pack_key(t) for t in ts}) == 1
    for result, solo_result in packed_against_solo(ts):
        assert (result.status, result.steps, result.success, result.steps_to_success) == \
               (solo_result.status, solo_result.steps, solo_result.success, solo_result.steps_to_success)


def test_members_end_on_their_own_and_stop_costing():
    ts = trials(max_steps=2000)
    rows, results = packed(ts)
    ends = sorted(r.steps for r in results.values())
    assert ends[0] < ends[-1]  # members stopped at different evaluations
    for r in results.values():  # no row after a member's end: it was dropped from the pack
        assert max(x.step for x in rows if x.trial_id == r.trial_id) == r.steps


def test_a_diverging_member_does_not_disturb_the_others():
    ts = trials(max_steps=200, target=-1)
    bad = trials(max_steps=200, target=-1, extra="")[0]
    import dataclasses
    bad = dataclasses.replace(bad, trial_id="bad", train=dataclasses.replace(bad.train, lr=1e30))
    rows, by_id = packed([bad, *ts[:3]])
    assert by_id["bad"].status == "diverged"
    for t in ts[:3]:
        mine = [r for r in rows if r.trial_id == t.trial_id]
        for a, b in zip(mine, solo(t)[0]):
            assert_close(a, b)
        assert by_id[t.trial_id].status == "finished"


def test_a_pack_that_raises_fails_its_members_with_the_error():
    ts = list(expand(parse_yaml(SPEC.format(momentum=0, max_steps=100, target=0.1).replace("sparse_parity", "exploding"))))
    _, results = packed(ts[:4])
    assert len(results) == 4 and all(r.status == "failed" and "boom at batch 4" in r.error for r in results.values())


def test_what_cannot_share_a_pack():
    base = trials()[0]
    import dataclasses
    other_width = dataclasses.replace(base, model_args=dataclasses.replace(base.model_args, width=64))
    adam = dataclasses.replace(base, train=dataclasses.replace(base.train, optimizer="adam"))
    other_batch = dataclasses.replace(base, train=dataclasses.replace(base.train, batch_size=8))
    assert pack_key(base) != pack_key(other_width) and pack_key(base) != pack_key(other_batch)
    assert pack_key(adam) is not None and pack_key(adam) != pack_key(base)
    deeper = dataclasses.replace(base, model_args=dataclasses.replace(base.model_args, depth=3))
    others = [dataclasses.replace(base, train=dataclasses.replace(base.train, **change))
              for change in ({"schedule": "cosine"}, {"warmup_steps": 10}, {"precision": "bf16"})]
    assert len({pack_key(t) for t in (base, deeper, *others)}) == 5


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_members_with_a_schedule_follow_their_solo_curves(schedule):
    # warmup, then the decay; lrs 0.1 and 0.03 in one pack, each scaled by the common factor
    ts = trials(momentum=f"0.9, schedule: {schedule}, warmup_steps: 40", max_steps=200, target=-1)  # into `fixed`
    assert len(ts) == 16 and len({pack_key(t) for t in ts}) == 1 and ts[0].train.warmup_steps == 40
    rows, _ = packed(ts)
    for t in ts:
        mine = [r for r in rows if r.trial_id == t.trial_id]
        solo_rows = solo(t)[0]
        assert len(mine) == len(solo_rows)
        for a, b in zip(mine, solo_rows):
            assert_close(a, b)


def test_members_of_depth_3_follow_their_solo_curves():
    text = SPEC.format(momentum=0.0, max_steps=200, target=0.1).replace("width: [32]", "width: [32]\n  depth: [3]")
    ts = list(expand(parse_yaml(text)))
    assert len(ts) == 16 and len({pack_key(t) for t in ts}) == 1 and ts[0].model_args.depth == 3
    for result, solo_result in packed_against_solo(ts):
        assert (result.status, result.steps, result.n_params) == \
               (solo_result.status, solo_result.steps, solo_result.n_params)


def test_packed_and_solo_sweeps_agree_through_ray(ray_cluster, tmp_path):
    text = SPEC.format(momentum=0.0, max_steps=600, target=0.1).replace("sweep: pack", "sweep: s")
    outcomes = {}
    for pack in (1, 16):
        spec = tmp_path / f"p{pack}.yaml"
        spec.write_text(text + f"resources: {{pack_size: {pack}}}\n")
        paretolab.run(spec, store=tmp_path / f"r{pack}")
        outcomes[pack] = paretolab.open_store(tmp_path / f"r{pack}").query(
            "SELECT trial_id, status, success, steps FROM trials ORDER BY trial_id").to_pylist()
    assert outcomes[1] == outcomes[16] and len(outcomes[1]) == 16


class KillMidPack(Observer):
    def __init__(self):
        self.killed = False

    def on_report(self, report):
        if not self.killed and any(r.step > 0 for r in report.rows) and not report.results:
            self.killed = True
            os.kill(report.pid, signal.SIGKILL)


def test_worker_lost_mid_pack_requeues_unfinished_members_only(ray_cluster, tmp_path):
    spec = tmp_path / "k.yaml"
    spec.write_text(SPEC.format(momentum=0.0, max_steps=8000, target=-1).replace("every: 25", "every: 500")
                    + "resources: {pack_size: 16}\n")
    killer = KillMidPack()
    summary = paretolab.run(spec, store=tmp_path / "r", workers=1, observer=killer)
    assert killer.killed and summary.ran == 16 and summary.failed == 0
    store = paretolab.open_store(tmp_path / "r")
    assert store.query("SELECT count(*) FROM trials").column(0)[0].as_py() == 16
    assert store.query("SELECT max(attempt) FROM trials").column(0)[0].as_py() == 2
    dup = store.query("SELECT count(*) FROM (SELECT trial_id, step FROM metrics GROUP BY ALL HAVING count(*) > 1)")
    assert dup.column(0)[0].as_py() == 0


def test_auto_pack_size_sizes_sequence_models(ray_cluster, tmp_path):
    # `pack_size: auto` (the default) counts a model's parameters on the meta device, where the
    # Transformer's dropout generator cannot exist; its trials still pack and run.
    spec = tmp_path / "tf.yaml"
    spec.write_text("""\
sweep: tf
task: automaton
task_args: {automaton: parity, length: 4}
model: transformer
model_args: {n_layers: 1, d_model: 8, n_heads: 2}
seeds: 2
max_steps: 5
eval: {every: 5, test_size: 16}
""")
    summary = paretolab.run(spec, store=tmp_path / "r")
    assert summary.ran == 2 and summary.failed == 0


@pytest.mark.parametrize("depth, outputs", [(2, 1), (3, 1), (2, 3), (4, 2)])
def test_the_mlp_packs_backward_gives_autograds_gradients(depth, outputs):
    import torch

    from paretolab.tasks.base import IO
    from paretolab.models.mlp import MLP, MLPArgs

    g = torch.Generator().manual_seed(0)
    nets = [MLP(MLPArgs(width=24, depth=depth), IO("vector", 10, outputs), g) for _ in range(5)]
    X = torch.randn(5, 16, 10, generator=g)
    Y = torch.randn(5, 16, outputs, generator=g)
    by_autograd, by_hand = MLP.stack(nets), MLP.stack(nets)
    ((by_autograd.forward(X) - Y) ** 2).sum().backward()
    out = by_hand.forward_for_backward(X)
    ((out - Y) ** 2).sum().backward()
    by_hand.backward(out.grad)
    assert torch.allclose(out, by_autograd.forward(X))
    for a, b in zip(by_autograd.params, by_hand.params):
        assert a.grad.shape == b.grad.shape and b.grad.abs().sum() > 0
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-6)

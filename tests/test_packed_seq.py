"""Packed training of sequence models: Transformer and LSTM members give their solo curves (Adam,
AdamW, SGD), end on their own, diverge on their own, and pack through `paretolab.run`."""

from __future__ import annotations

import dataclasses
import math

import pytest

import paretolab
from paretolab.orchestrator.grid import expand
from paretolab.spec import parse_yaml
from paretolab.tasks.registry import tasks
from paretolab.models.registry import models
from paretolab.workers.packed import auto_pack_size, example_tokens, pack_key
from paretolab.vocabulary.trial import MetricRow
from support import packed, solo

pytestmark = pytest.mark.usefixtures("one_thread")

TASKS = {
    "flipflop": "{length: 16}",
    "automaton": "{automaton: cyclic, n: 3, length: 8}",
    "sparse_boolean": "{length: 8, k: 2}",
}
MODELS = {
    "transformer": "{n_layers: 2, d_model: 16, n_heads: 2}",
    "lstm": "{n_layers: 2, hidden: 16}",
}
SPEC = """\
sweep: seq
task: {task}
task_args: {task_args}
model: {model}
model_args: {model_args}
grid:
  lr: [0.003, 0.001]
  train_size: [null, 64]
fixed: {{optimizer: {optimizer}, weight_decay: 0.1, batch_size: 8}}
seeds: 2
max_steps: {max_steps}
eval: {{every: 20, test_size: 32}}
success: {{metric: test_error, op: "<=", value: -1}}
"""


def trials(task="flipflop", model="transformer", optimizer="adamw", max_steps=60, extra="", model_args=None):
    text = SPEC.format(task=task, task_args=TASKS[task], model=model, model_args=model_args or MODELS[model],
                       optimizer=optimizer, max_steps=max_steps)
    return list(expand(parse_yaml(text + extra)))


def assert_close(a: MetricRow, b: MetricRow):
    """Equal up to floating-point rounding. The batched forward and backward round differently
    from the solo ones by about 1e-8; Adam divides by the root of the second moment, which lifts a
    rounding difference in a near-zero gradient to a full-size update, so after 60 steps losses
    agree to about 1e-3 relative, not 1e-6; error rates to one flipped prediction among the 32
    test sequences' read positions or the 8 x 20 training batches between evaluations."""
    assert (a.trial_id, a.step, a.samples) == (b.trial_id, b.step, b.samples)
    for k, v in a.values.items():
        w = b.values[k]
        tol = 0.03 if "error" in k or "acc" in k else 2e-3
        assert (v is None and w is None) or math.isclose(v, w, rel_tol=2e-3, abs_tol=tol), (k, v, w, a.step)


def curves(rows, ids) -> dict[str, list]:
    """Each trial's curve without its wall-clock times: what must not depend on the pack."""
    return {i: [(r.step, r.samples, r.values) for r in rows if r.trial_id == i] for i in ids}


def assert_follow_solo(ts, rows, results):
    for t in ts:
        solo_rows, solo_result = solo(t)
        mine = [r for r in rows if r.trial_id == t.trial_id]
        assert len(mine) == len(solo_rows)
        for a, b in zip(mine, solo_rows):
            assert_close(a, b)
        r = results[t.trial_id]
        assert (r.status, r.steps, r.n_params, r.flops_per_sample) == \
               (solo_result.status, solo_result.steps, solo_result.n_params, solo_result.flops_per_sample)


@pytest.mark.parametrize("task,model,optimizer", [
    ("flipflop", "transformer", "adamw"),
    ("automaton", "transformer", "adam"),
    ("sparse_boolean", "transformer", "adamw"),
    ("flipflop", "lstm", "adam"),
    ("automaton", "lstm", "sgd"),
])
def test_members_follow_their_solo_curves(task, model, optimizer):
    ts = trials(task, model, optimizer)  # 8 members: seeds, lrs, online and offline
    assert len(ts) == 8 and len({pack_key(t) for t in ts}) == 1 and pack_key(ts[0]) is not None
    assert_follow_solo(ts, *packed(ts))


@pytest.mark.parametrize("model,model_args", [
    ("transformer", "{n_layers: 1, d_model: 16, n_heads: 2, dropout: 0.2, pos_emb: sinusoidal, tie_embeddings: true}"),
    ("lstm", "{n_layers: 2, hidden: 16, dropout: 0.2}"),
])
def test_members_with_dropout_draw_their_own_masks(model, model_args):
    # each member's masks come from its own generator, as in its solo run: the curves agree only if so
    ts = trials("flipflop", model, "adamw", model_args=model_args)[:4]
    assert_follow_solo(ts, *packed(ts))


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_a_members_curve_does_not_depend_on_its_pack(model):
    # Each member's matmuls are its own slices of the batched ones, so its curve is the same to the
    # bit in any pack, including a pack of one.
    ts = trials("flipflop", model, "adamw", max_steps=40)
    alone, with_some, with_others = packed(ts[:1])[0], packed(ts[:4])[0], packed([ts[0], *ts[5:]])[0]
    mine = curves(alone, [ts[0].trial_id])
    assert mine == curves(with_some, [ts[0].trial_id]) == curves(with_others, [ts[0].trial_id])
    assert len(mine[ts[0].trial_id]) == 3


def test_a_member_that_succeeds_leaves_and_the_others_keep_their_curves():
    ts = trials(max_steps=80)[:4]
    # train_loss is None at step 0, so this member meets its criterion at the first later evaluation
    early = dataclasses.replace(ts[1], success=dataclasses.replace(ts[1].success, metric="train_loss", value=100.0))
    rows, results = packed([ts[0], early, *ts[2:]])
    assert results[early.trial_id].steps == 20 and results[early.trial_id].steps_to_success == 20
    assert max(r.step for r in rows if r.trial_id == early.trial_id) == 20
    assert results[ts[0].trial_id].steps == 80
    # the others' curves, after the pack was re-stacked without it, are those of a pack where no one left
    others = [t.trial_id for t in ts if t is not ts[1]]
    assert curves(rows, others) == curves(packed(ts)[0], others)
    assert_follow_solo([early], rows, results)


def test_a_diverging_member_does_not_disturb_the_others():
    ts = trials()[:3]
    bad = dataclasses.replace(ts[0], trial_id="bad", train=dataclasses.replace(ts[0].train, lr=1e30))
    rows, results = packed([bad, *ts])
    assert results["bad"].status == "diverged"
    ids = [t.trial_id for t in ts]
    assert curves(rows, ids) == curves(packed(ts)[0], ids)
    assert all(results[i].status == "finished" for i in ids)


def test_what_cannot_share_a_pack():
    base = trials()[0]
    changes = [{"optimizer": "adam"}, {"optimizer": "sgd"}, {"batch_size": 4}]
    others = [dataclasses.replace(base, train=dataclasses.replace(base.train, **c)) for c in changes]
    wider = dataclasses.replace(base, model_args=dataclasses.replace(base.model_args, d_model=32))
    with_dropout = dataclasses.replace(base, model_args=dataclasses.replace(base.model_args, dropout=0.1))
    longer = dataclasses.replace(base, task_args=dataclasses.replace(base.task_args, length=32))
    keys = [pack_key(t) for t in (base, *others, wider, with_dropout, longer)]
    assert None not in keys and len(set(keys)) == len(keys)


def test_sequence_sweeps_pack_through_ray_with_rows_per_member(ray_cluster, tmp_path):
    ts = trials(max_steps=40)
    task_cls, model_cls = tasks()[ts[0].task], models()[ts[0].model]
    import torch
    n_params = model_cls(ts[0].model_args, task_cls.io(ts[0].task_args), torch.Generator(), "meta").n_params
    size = auto_pack_size(n_params, tokens=example_tokens(task_cls.io(ts[0].task_args)))
    assert 2 <= size < len(ts)  # `pack_size: auto` packs them, in more than one pack
    text = SPEC.format(task="flipflop", task_args=TASKS["flipflop"], model="transformer",
                       model_args=MODELS["transformer"], optimizer="adamw", max_steps=40)
    outcomes = {}
    for pack in ("1", "auto"):
        spec = tmp_path / f"p{pack}.yaml"
        spec.write_text(text + f"resources: {{pack_size: {pack}}}\n")
        summary = paretolab.run(spec, store=tmp_path / f"r{pack}", workers=1)
        assert summary.ran == 8 and summary.failed == 0
        store = paretolab.open_store(tmp_path / f"r{pack}")
        outcomes[pack] = store.query(
            "SELECT trial_id, status, steps, samples, flops_per_sample, n_params FROM trials ORDER BY trial_id").to_pylist()
        curves = store.query("SELECT trial_id, count(*) AS n, max(step) AS last FROM metrics GROUP BY 1").to_pylist()
        assert sorted(c["trial_id"] for c in curves) == sorted(t.trial_id for t in ts)
        assert all(c["n"] == 3 and c["last"] == 40 for c in curves)  # steps 0, 20, 40 of each member
    assert outcomes["1"] == outcomes["auto"]


@pytest.mark.parametrize("mode", ["clean", "full"])
def test_flipflop_packed_loss_and_error_equal_each_members(mode):
    import torch

    from paretolab.tasks.flipflop import FlipFlop, FlipFlopArgs, read_mask
    from paretolab.workers.prefetch import PackBatches

    members = [FlipFlop(FlipFlopArgs(length=16, mode=mode), seed, 8) for seed in range(3)]
    X, Y = PackBatches(members).next(6)
    out = torch.randn(*Y.shape, 5, generator=torch.Generator().manual_seed(0))
    out[0][~read_mask(Y[0])] = float("nan") if mode == "clean" else 0.0  # ignored by the clean loss
    loss, error = members[0].packed_loss(out, Y, "cross_entropy"), members[0].packed_error(out, Y)
    for i, m in enumerate(members):
        torch.testing.assert_close(loss[i], m.loss(out[i], Y[i], "cross_entropy"))
        torch.testing.assert_close(error[i], m.error(out[i], Y[i]))
    assert torch.isfinite(loss).all()

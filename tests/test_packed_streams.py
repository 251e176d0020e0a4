"""Packed sparse-parity members draw their training streams ahead (on CPU) and still see exactly
their solo batches, also after the pack is re-stacked without its finished members."""

from __future__ import annotations

import pytest
import torch

from paretolab.orchestrator.grid import expand
from paretolab.spec import parse_yaml
from paretolab.tasks import sparse_parity
from paretolab.tasks.registry import tasks
from paretolab.workers.packed import pack_key, train_pack
from paretolab.workers.prefetch import PackBatches
from paretolab.vocabulary.trial import Assignment, MetricRow, TrialResult
from support import solo

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """\
sweep: streams
task: sparse_parity
task_args: {{n: 10, k: 2, train_size: {train_size}}}
model: mlp
model_args: {{width: 24}}
grid: {{lr: [0.2, 0.05]}}
seeds: 4
max_steps: 400
eval: {{every: 20, test_size: 200}}
success: {{metric: test_error, op: "<=", value: 0.05}}
"""


@pytest.mark.parametrize("values", [(0, 256, (32, 2), torch.uint8), (0, 300, (32,), torch.int64)])
def test_one_draw_of_many_steps_equals_the_steps_drawn_one_by_one(values):
    low, high, shape, dtype = values  # the property the ahead-drawing relies on, for both streams
    g = torch.Generator().manual_seed(3)
    one_by_one = torch.cat([torch.randint(low, high, shape, generator=g, dtype=dtype) for _ in range(64)])
    g = torch.Generator().manual_seed(3)
    assert torch.equal(one_by_one, torch.randint(low, high, (64 * shape[0], *shape[1:]), generator=g, dtype=dtype))


def test_inputs_are_the_bits_of_the_drawn_bytes():
    raw = torch.tensor([[0b00000101, 0b10], [255, 0]], dtype=torch.uint8)
    assert sparse_parity.signs(raw, 10).tolist() == [
        [1, -1, 1, -1, -1, -1, -1, -1, -1, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, -1, -1]]
    every_byte = sparse_parity.signs(torch.arange(256, dtype=torch.uint8).unsqueeze(1), 8)
    assert len({tuple(r) for r in every_byte.tolist()}) == 256  # each byte its own 8 inputs
    g = torch.Generator().manual_seed(0)
    x = sparse_parity.signs(sparse_parity.random_bytes(g, (20000, 7)), 50)
    assert x.shape == (20000, 50)
    assert x.mean(0).abs().max() < 0.05 and (x.T @ x / 20000 - torch.eye(50)).abs().max() < 0.05


@pytest.mark.parametrize("train_size", ["null", 150])
def test_members_see_their_solo_batches_across_restacking(train_size):
    ts = list(expand(parse_yaml(SPEC.format(train_size=train_size))))
    assert len({pack_key(t) for t in ts}) == 1
    cls = tasks()["sparse_parity"]
    solos = [cls(t.task_args, t.seed, t.eval.test_size) for t in ts]
    members = [cls(t.task_args, t.seed, t.eval.test_size) for t in ts]
    B, steps = 8, 0
    batches = PackBatches(members)
    for keep in ([0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 5, 7], [1, 3], [1]):  # finished members leave the pack
        members, solos = [members[i] for i in keep], [solos[i] for i in keep]
        batches.keep(torch.tensor(keep))
        for k in range(150):  # more than one ahead-drawn block, ending mid-block
            X, Y = batches.next(B)
            if k == 0:  # the members drew ahead: their block holds more than this step
                assert batches.block.shape[1] > B
            for i, s in enumerate(solos):
                x, y = s.train_batch(B)
                assert torch.equal(X[i], x) and torch.equal(Y[i].reshape(y.shape), y), (steps, i)
            steps += 1


@pytest.mark.parametrize("train_size", ["null", 150])
def test_packed_curves_equal_solo_curves_with_members_ending_apart(train_size):
    ts = list(expand(parse_yaml(SPEC.format(train_size=train_size))))
    items = list(train_pack([Assignment(t, 1) for t in ts]))
    ends = {r.trial_id: r.steps for r in items if isinstance(r, TrialResult)}
    assert len(set(ends.values())) > 1  # the pack was re-stacked along the way
    for t in ts:
        solo_rows, solo_result = solo(t)
        assert solo_result.steps == ends[t.trial_id]
        mine = [r for r in items if isinstance(r, MetricRow) and r.trial_id == t.trial_id]
        assert [r.step for r in mine] == [r.step for r in solo_rows]
        for a, b in zip(mine, solo_rows):
            assert a.values["test_error"] == pytest.approx(b.values["test_error"], abs=0.011)
            assert a.values["test_loss"] == pytest.approx(b.values["test_loss"], rel=1e-3, abs=1e-3)

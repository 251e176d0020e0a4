"""Grid expansion and trial identity: ids are content hashes of what changes a trial's result.

No id is hard-coded (any legitimate change to the content would break it); the tests check the
properties the store relies on as a cache: stable, blind to what does not change a result, sensitive
to what does, and stable when a grid is extended.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from paretolab.orchestrator.grid import count, expand
from paretolab.orchestrator.identity import ID_CHARS, canonical_json, non_default, point_content, trial_id
from paretolab.spec import load_spec, parse_yaml
from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import EvalArgs, TrainArgs

BASE = """\
sweep: {name}
task: sparse_parity
task_args: {{n: 12, k: 2}}
model: mlp
model_args: {{width: 16}}
fixed: {{lr: 0.1, batch_size: 8}}
seeds: 2
max_steps: 40
eval: {{every: 10, test_size: 64}}
success: {{metric: test_error, op: "<=", value: 0.1}}
"""


def spec(name: str = "a", extra: str = "", **replace: str) -> str:
    """BASE with lines starting `key:` replaced by `key: value`, plus extra lines."""
    lines = []
    for line in BASE.format(name=name).splitlines():
        key = line.split(":", 1)[0]
        lines.append(f"{key}: {replace.pop(key)}" if key in replace else line)
    lines += [f"{k}: {v}" for k, v in replace.items()]
    return "\n".join(lines) + "\n" + extra


def ids(text: str) -> list[str]:
    return [t.trial_id for t in expand(parse_yaml(text))]


def one_id(text: str) -> str:
    (first, *_) = ids(text)
    return first


def test_ids_are_16_hex_chars_and_unique():
    found = ids(spec(extra="grid: {width: [8, 16, 32], lr: [0.1, 0.05]}\n", model_args="{}", fixed="{batch_size: 8}"))
    assert len(found) == 3 * 2 * 2
    assert ID_CHARS == 16
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in found)
    assert len(set(found)) == len(found)


def test_ids_stable_across_two_parses(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(spec(extra="grid: {lr: [0.1, 0.2]}\n", fixed="{batch_size: 8}"))
    first = [t.trial_id for t in expand(load_spec(path))]
    second = [t.trial_id for t in expand(load_spec(path))]
    assert first == second
    assert first == ids(path.read_text())


def test_trial_config_id_matches_trial_id_of_its_fields():
    for t in expand(parse_yaml(spec())):
        assert t.trial_id == trial_id(t.task, t.task_args, t.model, t.model_args, t.train, t.seed,
                                      t.max_steps, t.eval, t.success)


def test_canonical_json_sorts_keys_and_refuses_nan():
    assert canonical_json({"b": 1, "a": [1.5, None]}) == '{"a":[1.5,null],"b":1}'
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


# --------------------------------------------------------------- what must NOT change the id

SAME = {
    "sweep_name": spec(name="other-sweep"),
    "resources": spec(extra="resources: {cpu: 4, gpu: 0.5}\n"),
    "max_attempts": spec(extra="max_attempts: 9\n"),
    "lr_exponent": spec(fixed="{lr: 1e-1, batch_size: 8}"),
    "lr_int_vs_float_batch": spec(fixed="{lr: 0.1, batch_size: 8.0}"),
    "default_loss": spec(fixed="{lr: 0.1, batch_size: 8, loss: hinge}"),
    "default_optimizer_and_momentum": spec(fixed="{lr: 0.1, batch_size: 8, optimizer: sgd, momentum: 0}"),
    "default_init": spec(model_args="{width: 16, init: dense, sparsity: null}"),
    "default_noise": spec(task_args="{n: 12, k: 2, noise: 0.0, train_size: null}"),
    "noise_int_zero": spec(task_args="{n: 12, k: 2, noise: 0}"),
    "default_lr_omitted": spec(fixed="{batch_size: 8}"),
    "default_success_spelled": spec(success="{metric: test_error, op: '<=', value: 0.1, stop_on_success: true}"),
    "default_success_omitted": spec(success="{}"),
    "param_in_fixed_not_task_args": spec(task_args="{}", fixed="{lr: 0.1, batch_size: 8, n: 12, k: 2}"),
    "axis_of_one_value": spec(model_args="{}", extra="grid: {width: [16]}\n"),
    "zip_of_one_value": spec(model_args="{}", extra="zip: {width: [16]}\n"),
    "seeds_as_list": spec(seeds="[0, 1]"),
    "default_depth": spec(model_args="{width: 16, depth: 2}"),
    "default_schedule_warmup_precision": spec(
        fixed="{lr: 0.1, batch_size: 8, schedule: constant, warmup_steps: 0, precision: fp32}"),
    "key_order": """\
max_steps: 40
seeds: 2
success: {value: 0.1, op: "<=", metric: test_error}
eval: {test_size: 64, every: 10}
fixed: {batch_size: 8, lr: 0.1}
model_args: {width: 16}
model: mlp
task_args: {k: 2, n: 12}
task: sparse_parity
sweep: reordered
""",
}


@pytest.mark.parametrize("text", list(SAME.values()), ids=list(SAME))
def test_id_ignores(text):
    assert ids(text) == ids(spec())


# --------------------------------------------------------------- what MUST change the id

DIFFERENT = {
    "width": spec(model_args="{width: 17}"),
    "lr": spec(fixed="{lr: 0.05, batch_size: 8}"),
    "batch_size": spec(fixed="{lr: 0.1, batch_size: 16}"),
    "loss": spec(fixed="{lr: 0.1, batch_size: 8, loss: logistic}"),
    "optimizer": spec(fixed="{lr: 0.1, batch_size: 8, optimizer: adam}"),
    "n": spec(task_args="{n: 13, k: 2}"),
    "k": spec(task_args="{n: 12, k: 3}"),
    "train_size": spec(task_args="{n: 12, k: 2, train_size: 100}"),
    "noise": spec(task_args="{n: 12, k: 2, noise: 0.1}"),
    "init": spec(model_args="{width: 16, init: sparse, sparsity: 2}"),
    "max_steps": spec(max_steps="41"),
    "eval_every": spec(eval="{every: 5, test_size: 64}"),
    "eval_test_size": spec(eval="{every: 10, test_size: 65}"),
    "success_value": spec(success='{metric: test_error, op: "<=", value: 0.05}'),
    "success_metric": spec(success='{metric: test_loss, op: "<=", value: 0.1}'),
    "success_op": spec(success='{metric: test_error, op: "<", value: 0.1}'),
    "stop_on_success": spec(success="{stop_on_success: false}"),
    "depth": spec(model_args="{width: 16, depth: 3}"),
    "schedule": spec(fixed="{lr: 0.1, batch_size: 8, schedule: cosine}"),
    "warmup_steps": spec(fixed="{lr: 0.1, batch_size: 8, warmup_steps: 10}"),
    "precision": spec(fixed="{lr: 0.1, batch_size: 8, precision: bf16}"),
}


@pytest.mark.parametrize("text", list(DIFFERENT.values()), ids=list(DIFFERENT))
def test_id_changes_with(text):
    base, other = ids(spec()), ids(text)
    assert len(other) == len(base) == 2
    assert not set(base) & set(other)


def test_id_changes_with_seed():
    a, b = ids(spec())
    assert a != b
    assert ids(spec(seeds="[1]")) == [b]
    assert ids(spec(seeds="[5]"))[0] not in (a, b)


# --------------------------------------------------------------- extending and sharing


def test_a_field_added_with_a_default_keeps_old_ids():
    @dataclasses.dataclass(frozen=True)
    class Before:
        width: int = 100
        init: str = "dense"

    @dataclasses.dataclass(frozen=True)
    class After:  # Before, one release later
        width: int = 100
        init: str = "dense"
        depth: int = 2

    assert non_default(After(width=16)) == non_default(Before(width=16)) == {"width": 16}
    assert non_default(After(width=16, depth=3)) == {"width": 16, "depth": 3}
    content = point_content("t", Before(16), "m", After(16), TrainArgs(), 10, EvalArgs(), Success())
    assert content["model_args"] == content["task_args"] and content["train"] == {}


def test_a_field_without_a_default_is_always_kept():
    @dataclasses.dataclass(frozen=True)
    class Required:
        n: int
        k: int = 3

    assert non_default(Required(n=5)) == {"n": 5}
    assert non_default(Required(n=5, k=3.0)) == {"n": 5}  # 3 and 3.0: one setting


def test_adding_a_width_keeps_old_ids():
    old = ids(spec(model_args="{}", extra="grid: {width: [16, 32]}\n"))
    new = ids(spec(model_args="{}", extra="grid: {width: [16, 32, 64]}\n"))
    assert set(old) < set(new)
    assert len(set(new) - set(old)) == 2  # one new width x two seeds


def test_adding_seeds_keeps_old_ids():
    old = ids(spec(extra="grid: {lr: [0.1, 0.2]}\n", fixed="{batch_size: 8}"))
    new = ids(spec(seeds="5", extra="grid: {lr: [0.1, 0.2]}\n", fixed="{batch_size: 8}"))
    assert set(old) < set(new)
    assert len(new) == 10 and len(set(new) - set(old)) == 6


def test_adding_an_axis_value_in_front_keeps_old_ids():
    old = ids(spec(model_args="{}", extra="grid: {width: [16, 32]}\n"))
    new = ids(spec(model_args="{}", extra="grid: {width: [8, 16, 32]}\n"))
    assert set(old) < set(new)


def test_two_sweeps_share_a_point():
    by_width = parse_yaml(spec(name="by-width", model_args="{}", extra="grid: {width: [16, 32]}\n"))
    by_lr = parse_yaml(spec(name="by-lr", fixed="{batch_size: 8}", extra="grid: {lr: [0.1, 0.3]}\n"))
    shared = {t.trial_id for t in expand(by_width)} & {t.trial_id for t in expand(by_lr)}
    # width 16, lr 0.1, both seeds
    assert shared == set(ids(spec()))
    assert len(shared) == 2


def test_duplicates_in_a_grid_are_dropped():
    # 16 twice, and 0.1 spelled two ways: each (width, lr, seed) once, in first-seen order.
    sweep = parse_yaml(spec(model_args="{}", fixed="{batch_size: 8}",
                            extra="grid: {width: [16, 32, 16], lr: [0.1, 1e-1]}\n"))
    trials = list(expand(sweep))
    assert [(t.model_args.width, t.train.lr, t.seed) for t in trials] == [
        (16, 0.1, 0), (16, 0.1, 1), (32, 0.1, 0), (32, 0.1, 1)]
    assert len({t.trial_id for t in trials}) == 4


def test_duplicate_python_points_are_dropped(tmp_path):
    path = tmp_path / "dups.py"
    path.write_text(
        'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 40, "seeds": [0, 1],\n'
        '        "task_args": {"n": 12, "k": 2}, "model_args": {"width": 16}, "fixed": {"batch_size": 8},\n'
        '        "eval": {"every": 10, "test_size": 64}}\n'
        'def trials():\n'
        '    yield {}\n'
        '    yield {"lr": 0.1}\n'  # the default spelled out: the same trials
        '    yield {"seed": 1}\n'  # one of them again, with its own seed
    )
    trials = list(expand(load_spec(path)))
    assert [t.trial_id for t in trials] == ids(spec())


# --------------------------------------------------------------- count


COUNTED = {
    "fixed_only": spec(),
    "grid": spec(model_args="{}", fixed="{batch_size: 8}", seeds="3",
                 extra="grid: {width: [8, 16], lr: [0.1, 0.2, 0.3], train_size: [null, 50]}\n"),
    "logspace": spec(model_args="{}", extra="grid: {width: {logspace: [1, 4, 9]}}\n"),
    "zip": spec(model_args="{}", fixed="{batch_size: 8}", extra="zip: {width: [8, 16, 32], lr: [0.3, 0.2, 0.1]}\n"),
    "grid_and_zips": spec(model_args="{}", task_args="{}", fixed="{batch_size: 8}", seeds="[3, 4]",
                          extra="grid: {lr: [0.1, 0.2]}\n"
                                "zip: [{width: [8, 16]}, {n: [10, 20, 30], k: [2, 3, 4]}]\n"),
}


@pytest.mark.parametrize("text", list(COUNTED.values()), ids=list(COUNTED))
def test_count_matches_expand(text):
    sweep = parse_yaml(text)
    assert count(sweep) == len(list(expand(sweep))) == len(set(ids(text)))


def test_count_matches_expand_python(tmp_path):
    path = tmp_path / "py.py"
    path.write_text(
        'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 10, "seeds": 3}\n'
        'def trials():\n'
        '    for w in (8, 16):\n'
        '        for n in (10, 20):\n'
        '            yield {"width": w, "n": n}\n'
        '    yield {"width": 32, "seed": 7}\n'
    )
    sweep = load_spec(path)
    assert count(sweep) == len(list(expand(sweep))) == 2 * 2 * 3 + 1


def test_expand_order_is_grid_order_seeds_innermost():
    sweep = parse_yaml(spec(model_args="{}", fixed="{batch_size: 8}",
                            extra="grid: {width: [8, 16], lr: [0.1, 0.2]}\n"))
    assert [(t.model_args.width, t.train.lr, t.seed) for t in expand(sweep)] == [
        (8, 0.1, 0), (8, 0.1, 1), (8, 0.2, 0), (8, 0.2, 1),
        (16, 0.1, 0), (16, 0.1, 1), (16, 0.2, 0), (16, 0.2, 1)]


def test_a_command_holding_braces_hashes_as_its_content():
    """A command's own `{seed}` and `{{literal}}` text is not taken for the fast hashing's fields."""
    from paretolab.orchestrator.identity import SweepIds, canonical_json, code_content, seeded_id
    from paretolab.vocabulary.success import Success
    from paretolab.vocabulary.trial import Code

    code = Code(kind="command", name="x", command=("python", "t.py", "--seed", "{seed}", "{{x}}", "{lr}"), digest="d")
    ids = SweepIds.of_code(code, None, Success())
    for seed in (0, 3, 2**63 - 1):
        assert ids.point(canonical_json({"lr": 0.1})).raw(seed).hex() == \
            seeded_id(code_content(code, {"lr": 0.1}, None, Success()), seed)

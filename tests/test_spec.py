"""Sweep spec parsing: valid YAML and Python specs, and one table of malformed specs.

Every malformed spec must raise `SpecError` (never another exception) with a message that names the
file, the offending key and what is allowed or the bad value; some errors only show once the grid is
expanded (e.g. k > n), so the table loads and expands.
"""

from __future__ import annotations

import textwrap

import pytest
import yaml

from paretolab.errors import SpecError
from paretolab.orchestrator.grid import count, expand
from paretolab.vocabulary.sweep import Resources, Sweep
from paretolab.spec import load_spec, parse_yaml
from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import EvalArgs

BASE = {
    "sweep": "t",
    "task": "sparse_parity",
    "task_args": {"n": 10, "k": 2},
    "model": "mlp",
    "max_steps": 100,
}


def write(tmp_path, text: str, name: str = "spec.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def dump(drop: tuple[str, ...] = (), **over) -> str:
    """The YAML of BASE with keys dropped or replaced."""
    raw = {k: v for k, v in {**BASE, **over}.items() if k not in drop}
    return yaml.safe_dump(raw, sort_keys=False)


def load_and_expand(path):
    sweep = load_spec(path)
    return sweep, list(expand(sweep))


# ---------------------------------------------------------------- valid YAML specs


def test_valid_yaml_spec_parses_into_sweep(tmp_path):
    path = write(tmp_path, """\
        sweep: parity-small
        task: sparse_parity
        task_args: {n: 20, k: 3}
        model: mlp
        model_args: {init: dense}
        grid:
          width: [32, 64]
          train_size: [null, 100]
        fixed: {lr: 1e-3, batch_size: 16}
        seeds: 2
        max_steps: 500
        eval: {every: 50, test_size: 200}
        success: {metric: test_error, op: "<", value: 0.05, stop_on_success: false}
        resources: {cpu: 2, gpu: 0.25}
        max_attempts: 5
    """)
    sweep = load_spec(path)
    assert isinstance(sweep, Sweep)
    assert sweep.name == "parity-small"
    assert (sweep.task, sweep.model) == ("sparse_parity", "mlp")
    assert sweep.grid == (("width", (32, 64)), ("train_size", (None, 100)))
    assert sweep.zips == ()
    assert sweep.points is None
    assert dict(sweep.fixed) == {"n": 20, "k": 3, "init": "dense", "lr": 0.001, "batch_size": 16}
    assert sweep.fixed == tuple(sorted(sweep.fixed))
    assert sweep.seeds == (0, 1)
    assert sweep.max_steps == 500
    assert sweep.eval == EvalArgs(every=50, test_size=200)
    assert sweep.success == Success(metric="test_error", op="<", value=0.05, stop_on_success=False)
    assert sweep.resources == Resources(cpu=2.0, gpu=0.25)
    assert sweep.max_attempts == 5
    assert sweep.path == str(path)
    assert sweep.source == path.read_text()
    assert count(sweep) == 2 * 2 * 2


def test_defaults_when_optional_keys_are_absent():
    sweep = parse_yaml(dump(drop=("task_args",)), "mem.yaml")
    assert sweep.fixed == ()
    assert sweep.grid == () and sweep.zips == ()
    assert sweep.seeds == (0,)
    assert sweep.eval == EvalArgs()
    assert sweep.success == Success()
    assert sweep.resources == Resources()
    assert sweep.max_attempts == 3
    assert sweep.path == "mem.yaml"


def test_yml_suffix_is_accepted(tmp_path):
    assert load_spec(write(tmp_path, dump(), "spec.yml")).name == "t"


def test_sweep_name_is_stripped():
    assert parse_yaml(dump(sweep="  padded  ")).name == "padded"


def test_range_axis():
    sweep = parse_yaml(dump(grid={"width": {"range": [8, 40, 8]}, "batch_size": {"range": [1, 4]}}))
    assert sweep.grid == (("width", (8, 16, 24, 32)), ("batch_size", (1, 2, 3)))


def test_negative_range_step():
    sweep = parse_yaml(dump(grid={"width": {"range": [30, 0, -10]}}))
    assert sweep.grid == (("width", (30, 20, 10)),)


def test_logspace_on_int_axis_is_rounded_and_deduplicated():
    # 10^(0, 0.25, ..., 1) = 1, 1.78, 3.16, 5.62, 10; and 6 points in [1, 2] round onto {1, 2}.
    sweep = parse_yaml(dump(grid={"width": {"logspace": [1, 10, 5]}, "train_size": {"logspace": [1, 2, 6]}}))
    widths, sizes = dict(sweep.grid)["width"], dict(sweep.grid)["train_size"]
    assert widths == (1, 2, 3, 6, 10)
    assert all(type(w) is int for w in widths)
    assert sizes == (1, 2)


def test_logspace_on_float_axis_keeps_floats():
    lrs = dict(parse_yaml(dump(grid={"lr": {"logspace": [1e-3, 1e-1, 3]}})).grid)["lr"]
    assert lrs == pytest.approx((1e-3, 1e-2, 1e-1), rel=1e-12)
    assert all(type(x) is float for x in lrs)


def test_logspace_with_one_point_is_lo():
    assert parse_yaml(dump(grid={"width": {"logspace": [64, 1024, 1]}})).grid == (("width", (64,)),)


def test_linspace():
    sweep = parse_yaml(dump(grid={"noise": {"linspace": [0.0, 0.4, 5]}, "width": {"linspace": [10, 20, 3]}}))
    assert dict(sweep.grid)["noise"] == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4))
    assert dict(sweep.grid)["width"] == (10, 15, 20)


def test_null_in_grid_means_online_and_offline():
    sweep = parse_yaml(dump(grid={"train_size": [None, 100]}))
    assert sweep.grid == (("train_size", (None, 100)),)
    sizes = [t.task_args.train_size for t in expand(sweep)]
    assert sizes == [None, 100]


def test_yaml11_exponent_string_coerces_to_float():
    text = "sweep: t\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\nfixed: {lr: 1e-3}\ngrid: {momentum: [5e-1, 0]}\n"
    assert yaml.safe_load(text)["fixed"]["lr"] == "1e-3"  # the YAML 1.1 quirk the parser must undo
    sweep = parse_yaml(text)
    assert dict(sweep.fixed)["lr"] == 0.001 and type(dict(sweep.fixed)["lr"]) is float
    assert sweep.grid == (("momentum", (0.5, 0.0)),)
    assert [t.train.lr for t in expand(sweep)] == [0.001, 0.001]


def test_anchors_aliases_and_merge_keys_work_within_bounds():
    # a key set twice is an error, but a merge key's keys may be overridden; aliases within MAX_SPEC_VALUES
    text = ("sweep: t\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\n"
            "grid: {width: &v [16, 32], train_size: *v}\neval: {<<: {every: 5, test_size: 64}, every: 2}\n")
    sweep = parse_yaml(text)
    assert sweep.grid == (("width", (16, 32)), ("train_size", (16, 32)))
    assert sweep.eval == EvalArgs(every=2, test_size=64)


def test_values_in_errors_are_bounded():
    from paretolab.vocabulary.errors import shown

    laughs = ["lol"] * 9
    for _ in range(9):
        laughs = [laughs] * 9  # 9^10 strings, shared
    looped: list = []
    looped.append(looped)
    for value, starts in [("x" * 10**7, "'xxx"), (laughs, "[[[[[[[[[['lol', "), (looped, "[[[["),
                          (list(range(10**6)), "[0, 1, 2, "), (10**5000, "an integer of 16,610 bits")]:
        text = shown(value)
        assert text.startswith(starts) and len(text) < 400, text
    assert shown("x" * 10**7).endswith("... (10,000,000 characters)")
    assert shown(list(range(10**6))).endswith(", ... (1,000,000 items)]")
    assert [shown(v) for v in ([1, 2, 1], {"mlp": 1}, "wide", (1,), 1e20, None)] == \
        ["[1, 2, 1]", "{'mlp': 1}", "'wide'", "(1,)", "1e+20", "None"]  # small values: their repr


def test_int_written_for_float_parameter_becomes_float():
    sweep = parse_yaml(dump(fixed={"lr": 1, "noise": 0}))
    assert dict(sweep.fixed) == {"n": 10, "k": 2, "lr": 1.0, "noise": 0.0}
    assert all(type(v) is float for k, v in sweep.fixed if k in ("lr", "noise"))


def test_whole_float_for_int_parameter_becomes_int():
    sweep = parse_yaml(dump(model_args={"width": 64.0}, fixed={"batch_size": "1e2"}))
    assert dict(sweep.fixed)["width"] == 64 and type(dict(sweep.fixed)["width"]) is int
    assert dict(sweep.fixed)["batch_size"] == 100


def test_seeds_as_count():
    assert parse_yaml(dump(seeds=4)).seeds == (0, 1, 2, 3)


def test_seeds_as_list():
    sweep = parse_yaml(dump(seeds=[7, 3, 11]))
    assert sweep.seeds == (7, 3, 11)
    assert [t.seed for t in expand(sweep)] == [7, 3, 11]


def test_zip_single_mapping():
    sweep = parse_yaml(dump(zip={"width": [32, 64, 128], "lr": [0.1, 0.05, 0.025]}, seeds=2))
    assert sweep.zips == ((("width", (32, 64, 128)), ("lr", (0.1, 0.05, 0.025))),)
    trials = list(expand(sweep))
    assert [(t.model_args.width, t.train.lr, t.seed) for t in trials] == [
        (32, 0.1, 0), (32, 0.1, 1), (64, 0.05, 0), (64, 0.05, 1), (128, 0.025, 0), (128, 0.025, 1)]


def test_zip_list_of_mappings_is_crossed_with_grid():
    sweep = parse_yaml(dump(
        grid={"train_size": [None, 100]},
        zip=[{"width": [32, 64], "lr": [0.1, 0.05]}, {"n": [10, 20], "k": [2, 3]}],
        task_args=None,
    ))
    assert len(sweep.zips) == 2
    combos = {(t.task_args.train_size, t.model_args.width, t.train.lr, t.task_args.n, t.task_args.k)
              for t in expand(sweep)}
    assert len(combos) == count(sweep) == 2 * 2 * 2
    assert (100, 64, 0.05, 10, 2) in combos
    assert not any(w == 32 and lr == 0.05 for _, w, lr, _, _ in combos)
    assert not any(n == 10 and k == 3 for *_, n, k in combos)


def test_sparse_init_spec():
    sweep = parse_yaml(dump(model_args={"init": "sparse", "sparsity": 2}))
    (t,) = expand(sweep)
    assert (t.model_args.init, t.model_args.sparsity) == ("sparse", 2)


# ---------------------------------------------------------------- Python specs


PY_VALID = '''\
SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 50, "seeds": 2,
        "task_args": {"n": 12, "k": 2}}

def trials():
    for width in (16, 32):
        yield {"width": width, "lr": "1e-2"}
    yield {"width": 64, "seed": 9}
'''


def test_python_spec(tmp_path):
    path = write(tmp_path, PY_VALID, "py_sweep.py")
    sweep = load_spec(path)
    assert sweep.name == "py_sweep"  # defaults to the file's stem
    assert sweep.grid == () and sweep.zips == ()
    assert sweep.points == (
        (("lr", 0.01), ("width", 16)),
        (("lr", 0.01), ("width", 32)),
        (("seed", 9), ("width", 64)),
    )
    trials = list(expand(sweep))
    assert [(t.model_args.width, t.train.lr, t.seed) for t in trials] == [
        (16, 0.01, 0), (16, 0.01, 1), (32, 0.01, 0), (32, 0.01, 1), (64, 0.1, 9)]
    assert all(t.task_args.n == 12 for t in trials)
    assert count(sweep) == len(trials) == 5


def test_python_spec_sweep_name_from_spec(tmp_path):
    text = 'SPEC = {"sweep": "named", "task": "sparse_parity", "model": "mlp", "max_steps": 5}\n' \
           'def trials():\n    yield {}\n'
    assert load_spec(write(tmp_path, text, "file.py")).name == "named"


PY_BAD = [
    ("no_trials", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n',
     ["def trials()"]),
    ("non_dict", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                 'def trials():\n    yield {"width": 8}\n    yield [("width", 16)]\n',
     ["trials() item 1", "expected a dict", "list"]),
    ("trials_raises", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                      'def trials():\n    yield {"width": 8}\n    raise RuntimeError("boom")\n',
     ["trials() raised RuntimeError", "boom"]),
    ("module_raises", 'raise KeyError("at import")\n', ["the spec raised KeyError", "at import"]),
    ("unknown_param", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                      'def trials():\n    yield {"widht": 8}\n',
     ["trials()[0].widht", "unknown parameter 'widht'", "width"]),
    ("set_twice", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5, "fixed": {"lr": 0.1}}\n'
                  'def trials():\n    yield {"lr": 0.2}\n',
     ["trials()[0].lr", "also set in SPEC"]),
    ("bad_value", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                  'def trials():\n    yield {"width": "wide"}\n',
     ["trials()[0].width", "expected an integer", "'wide'"]),
    ("bad_seed", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                 'def trials():\n    yield {"seed": -1}\n',
     ["trials()[0].seed", "integer in 0..2**63-1", "-1"]),
    ("no_points", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
                  'def trials():\n    return iter(())\n',
     ["yielded no trials"]),
    ("grid_in_spec", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5, "grid": {"width": [8]}}\n'
                     'def trials():\n    yield {}\n',
     ["grid", "unknown key", "allowed:"]),
    ("spec_not_dict", 'SPEC = ["task", "sparse_parity"]\ndef trials():\n    yield {}\n',
     ["SPEC", "list"]),
    ("missing_task", 'SPEC = {"model": "mlp", "max_steps": 5}\ndef trials():\n    yield {}\n',
     ["task: required key is missing"]),
    ("k_gt_n", 'SPEC = {"task": "sparse_parity", "model": "mlp", "max_steps": 5}\n'
               'def trials():\n    yield {"n": 3, "k": 4}\n',
     ["point {", "k=4", "n=3", "k must be between 1 and n=3"]),
]


@pytest.mark.parametrize("text, fragments", [c[1:] for c in PY_BAD], ids=[c[0] for c in PY_BAD])
def test_bad_python_spec(tmp_path, text, fragments):
    path = write(tmp_path, text, "bad_spec.py")
    with pytest.raises(SpecError) as info:
        load_and_expand(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# ---------------------------------------------------------------- malformed YAML specs

# (id, YAML text, fragments the message must contain besides the file path)
BAD_YAML = [
    ("yaml_syntax", "sweep: t\ntask: [sparse_parity\nmodel: mlp\n", ["invalid YAML", "line"]),
    ("yaml_tab", "sweep: t\n\ttask: sparse_parity\n", ["invalid YAML", "line 2"]),
    ("top_level_list", "- sweep: t\n- task: sparse_parity\n", ["a spec is a mapping", "got list", "sweep"]),
    ("top_level_scalar", "just a string\n", ["a spec is a mapping", "got str"]),
    ("empty_file", "", ["a spec is a mapping", "NoneType"]),
    ("unknown_top_key", dump(epochs=3), ["epochs: unknown key", "allowed:", "max_steps"]),
    ("typo_top_key", dump(seed=3), ["seed: unknown key", "seeds"]),
    ("unknown_eval_key", dump(eval={"every": 10, "often": 2}), ["eval.often: unknown key", "every, test_size"]),
    ("unknown_success_key", dump(success={"metrc": "test_error"}),
     ["success.metrc: unknown key", "metric, op, value, stop_on_success"]),
    ("unknown_resources_key", dump(resources={"cpus": 2}), ["resources.cpus: unknown key", "cpu, gpu"]),
    ("missing_sweep", dump(drop=("sweep",)), ["sweep: required key is missing"]),
    ("missing_task", dump(drop=("task",)), ["task: required key is missing"]),
    ("missing_model", dump(drop=("model",)), ["model: required key is missing"]),
    ("missing_max_steps", dump(drop=("max_steps",)), ["max_steps: required key is missing"]),
    ("null_max_steps", dump(max_steps=None), ["max_steps: required key is missing"]),
    ("empty_sweep_name", dump(sweep="  "), ["sweep:", "non-empty name"]),
    ("unknown_task", dump(task="parity"), ["task: unknown task 'parity'", "; known: ", "sparse_parity"]),
    ("unknown_model", dump(model="resnet"), ["model: unknown model 'resnet'", "; known: ", "mlp"]),
    ("task_not_a_name", dump(task=["sparse_parity"]), ["task:", "unknown task ['sparse_parity']", "sparse_parity"]),
    ("model_not_a_name", dump(model={"mlp": 1}), ["model:", "unknown model {'mlp': 1}", "; known: ", "mlp"]),
    ("unknown_task_arg", dump(task_args={"n": 10, "d": 3}), ["task_args.d: unknown parameter 'd'", "known:", "train_size"]),
    ("model_param_in_task_args", dump(task_args={"width": 8}), ["task_args.width: unknown parameter 'width'", "known: k, n"]),
    ("unknown_model_arg", dump(model_args={"layers": 3}), ["model_args.layers: unknown parameter 'layers'", "width"]),
    ("unknown_fixed", dump(fixed={"learning_rate": 0.1}), ["fixed.learning_rate: unknown parameter", "lr"]),
    ("unknown_grid", dump(grid={"widht": [8, 16]}), ["grid.widht: unknown parameter 'widht'", "width"]),
    ("unknown_zip", dump(zip={"widht": [8, 16]}), ["zip.widht: unknown parameter 'widht'", "width"]),
    ("fixed_and_grid", dump(fixed={"lr": 0.1}, grid={"lr": [0.1, 0.2]}), ["grid.lr", "'lr' is also set elsewhere"]),
    ("task_args_and_fixed", dump(fixed={"n": 12}), ["fixed.n", "'n' is set twice"]),
    ("grid_and_zip", dump(grid={"width": [8]}, zip={"width": [16]}), ["zip.width", "also set elsewhere"]),
    ("two_zip_groups_share_axis", dump(zip=[{"width": [8]}, {"width": [16]}]), ["zip[1].width", "also set elsewhere"]),
    ("width_not_int", dump(grid={"width": ["abc"]}), ["grid.width", "expected an integer", "'abc'"]),
    ("width_fraction", dump(model_args={"width": 10.5}), ["model_args.width", "expected an integer", "10.5"]),
    ("width_bool", dump(model_args={"width": True}), ["model_args.width", "expected an integer", "True"]),
    ("lr_list", dump(fixed={"lr": [1]}), ["fixed.lr", "expected a finite number", "[1]"]),
    ("lr_inf", dump(fixed={"lr": float("inf")}), ["fixed.lr", "expected a finite number", "inf"]),
    ("loss_not_str", dump(fixed={"loss": 3}), ["fixed.loss", "expected a string", "3"]),
    ("optimizer_literal", dump(fixed={"optimizer": "rmsprop"}), ["fixed.optimizer", "'rmsprop' is not allowed", "sgd, adam"]),
    ("init_literal", dump(grid={"init": ["dense", "orthogonal"]}), ["grid.init", "'orthogonal'", "dense, sparse"]),
    ("stop_on_success_int", dump(success={"stop_on_success": 3}), ["success.stop_on_success", "true or false", "3"]),
    ("max_steps_zero", dump(max_steps=0), ["max_steps", "integer >= 1", "0"]),
    ("max_steps_negative", dump(max_steps=-5), ["max_steps", "integer >= 1", "-5"]),
    ("max_steps_text", dump(max_steps="many"), ["max_steps", "expected an integer", "'many'"]),
    ("max_attempts_zero", dump(max_attempts=0), ["max_attempts", "integer >= 1"]),
    ("eval_every_zero", dump(eval={"every": 0}), ["eval.every", "integer >= 1", "0"]),
    ("eval_test_size_negative", dump(eval={"test_size": -1}), ["eval.test_size", "integer >= 1", "-1"]),
    ("eval_not_mapping", dump(eval=10), ["eval:", "expected a mapping", "10"]),
    ("grid_not_mapping", dump(grid=["width"]), ["grid:", "expected a mapping", "['width']"]),
    ("seeds_zero", dump(seeds=0), ["seeds:", "count must be >= 1", "0"]),
    ("seeds_empty_list", dump(seeds=[]), ["seeds:", "non-empty list", "[]"]),
    ("seeds_bool", dump(seeds=True), ["seeds:", "expected a count", "True"]),
    ("seeds_duplicate", dump(seeds=[1, 2, 1]), ["seeds:", "repeats a seed", "[1, 2, 1]"]),
    ("seeds_negative", dump(seeds=[0, -3]), ["seeds:", "integer in 0..2**63-1", "-3"]),
    ("seed_as_grid_axis", dump(grid={"seed": [0, 1]}), ["grid.seed", "not a grid axis", "top-level `seeds`"]),
    ("width_zero_at_expansion", dump(grid={"width": [0, 8]}), ["point {", "width=0", "width must be >= 1"]),
    ("n_zero_at_expansion", dump(task_args={"n": 0, "k": 1}), ["point {", "n=0", "n must be >= 1"]),
    ("k_gt_n_at_expansion", dump(task_args={"n": 10}, grid={"k": [2, 11]}), ["point {", "k=11", "n=10", "k must be between 1 and n=10, got 11"]),
    ("noise_too_high", dump(task_args={"noise": 0.5}), ["point {", "noise=0.5", "[0, 0.5)"]),
    ("train_size_zero", dump(grid={"train_size": [None, 0]}), ["point {", "train_size=0", "or null (online)"]),
    ("batch_size_zero", dump(fixed={"batch_size": 0}), ["point {", "batch_size=0", "batch_size must be >= 1"]),
    ("lr_negative", dump(grid={"lr": [0.1, -0.1]}), ["point {", "lr=-0.1", "lr must be > 0"]),
    ("empty_axis", dump(grid={"width": []}), ["grid.width", "at least one value", "[]"]),
    ("scalar_axis", dump(grid={"width": 64}), ["grid.width", "expected a list of values", "logspace", "64"]),
    ("unknown_axis_generator", dump(grid={"width": {"geomspace": [1, 8, 4]}}), ["grid.width", "range", "geomspace"]),
    ("logspace_lo_zero", dump(grid={"width": {"logspace": [0, 100, 3]}}), ["grid.width.logspace", "0 < lo <= hi", "[0, 100, 3]"]),
    ("logspace_lo_gt_hi", dump(grid={"width": {"logspace": [100, 10, 3]}}), ["grid.width.logspace", "0 < lo <= hi", "[100, 10, 3]"]),
    ("logspace_num_zero", dump(grid={"width": {"logspace": [1, 10, 0]}}), ["grid.width.logspace", "whole num >= 1"]),
    ("logspace_two_args", dump(grid={"width": {"logspace": [1, 10]}}), ["grid.width.logspace", "[lo, hi, num]", "[1, 10]"]),
    ("linspace_lo_gt_hi", dump(grid={"noise": {"linspace": [0.3, 0.1, 3]}}), ["grid.noise.linspace", "lo <= hi"]),
    ("linspace_text", dump(grid={"noise": {"linspace": [0, "lots", 3]}}), ["grid.noise.linspace", "expected numbers", "'lots'"]),
    ("linspace_nan_int_axis", "sweep: t\ntask: sparse_parity\nmodel: mlp\nmax_steps: 5\n"
                              "grid: {width: {linspace: [.nan, 10, 3]}}\n", ["grid.width.linspace", "nan"]),
    ("logspace_inf_int_axis", "sweep: t\ntask: sparse_parity\nmodel: mlp\nmax_steps: 5\n"
                              "grid: {width: {logspace: [1, .inf, 3]}}\n", ["grid.width.logspace", "inf"]),
    ("range_empty", dump(grid={"width": {"range": [10, 5]}}), ["grid.width.range", "is empty", "[10, 5]"]),
    ("range_zero_step", dump(grid={"width": {"range": [1, 5, 0]}}), ["grid.width.range", "non-zero step"]),
    ("range_fraction", dump(grid={"width": {"range": [1, 5.5]}}), ["grid.width.range", "integers", "5.5"]),
    ("zip_unequal", dump(zip={"width": [8, 16, 32], "lr": [0.1, 0.2]}), ["zip:", "equal lengths", "width: 3", "lr: 2"]),
    ("zip_group_unequal", dump(zip=[{"width": [8]}, {"lr": [0.1, 0.2], "momentum": [0.5]}]),
     ["zip[1]", "equal lengths", "lr: 2", "momentum: 1"]),
    ("zip_empty_group", dump(zip={}), ["zip:", "at least one axis"]),
    ("zip_seed", dump(zip={"seed": [0, 1], "width": [8, 16]}), ["zip.seed", "not a grid axis"]),
    ("unknown_success_metric", dump(success={"metric": "accuracy"}),
     ["success.metric", "unknown metric 'accuracy'", "train_loss, train_error, test_loss, test_error, test_acc"]),
    ("bad_success_op", dump(success={"op": "=="}), ["success.op", "'==' is not allowed", "<=, <, >=, >"]),
    ("success_value_nan", "sweep: t\ntask: sparse_parity\nmodel: mlp\nmax_steps: 5\nsuccess: {value: .nan}\n",
     ["success.value", "finite number", "nan"]),
    ("resources_cpu_zero", dump(resources={"cpu": 0}), ["resources:", "cpu must be > 0", "'cpu': 0"]),
    ("resources_gpu_negative", dump(resources={"gpu": -1}), ["resources:", "gpu >= 0", "'gpu': -1"]),
    ("sparse_without_sparsity", dump(model_args={"init": "sparse"}), ["point {", "init='sparse'", "needs sparsity"]),
    ("sparsity_gt_n", dump(model_args={"init": "sparse", "sparsity": 11}),
     ["point {", "sparsity=11", "between 1 and the input dimension 10, got 11"]),
    ("loss_not_supported", dump(fixed={"loss": "cross_entropy"}),
     ["point {", "loss='cross_entropy'", "not one of hinge, logistic, square"]),
]


@pytest.mark.parametrize("text, fragments", [c[1:] for c in BAD_YAML], ids=[c[0] for c in BAD_YAML])
def test_bad_yaml_spec(tmp_path, text, fragments):
    path = write(tmp_path, text, "bad.yaml")
    with pytest.raises(SpecError) as info:
        load_and_expand(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message.strip(), "one line for the CLI"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_bad_yaml_table_is_large():
    assert len(BAD_YAML) >= 30
    assert len({c[0] for c in BAD_YAML}) == len(BAD_YAML)


def test_parse_yaml_names_the_given_path():
    with pytest.raises(SpecError, match=r"^somewhere/x\.yaml: model: unknown model 'cnn'"):
        parse_yaml(dump(model="cnn"), "somewhere/x.yaml")


def test_errors_at_expansion_come_from_expand_not_parse(tmp_path):
    # k > n is a property of a point, not of any one key: the parse succeeds, expansion names the point.
    sweep = load_spec(write(tmp_path, dump(task_args={"n": 10}, grid={"k": [2, 11], "width": [8]})))
    with pytest.raises(SpecError) as info:
        list(expand(sweep))
    assert str(info.value) == (f"{tmp_path / 'spec.yaml'}: point {{k=11, n=10, width=8}}: "
                               "k must be between 1 and n=10, got 11")


# ---------------------------------------------------------------- file-level errors


def test_non_utf8_file(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "not UTF-8" in str(info.value) and "byte 0" in str(info.value)


def test_unknown_suffix(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text('{"sweep": "t"}')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value)
    assert "'.json'" in str(info.value) and ".yaml, .yml or .py" in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="no such spec file") as info:
        load_spec(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_spec(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path)


def test_load_spec_accepts_str_path(tmp_path):
    assert load_spec(str(write(tmp_path, dump()))).name == "t"

"""The task and the model as axes of one sweep: an LSTM against a Transformer, each with its own
arguments, in one sweep that every analysis groups by `model`."""

from __future__ import annotations

import subprocess

import pytest

import paretolab
from paretolab.errors import SpecError
from paretolab.orchestrator.grid import axes, expand, parameter_names
from paretolab.spec import parse_yaml

COMPARE = """\
sweep: compare
task: flipflop
task_args: {length: 12}
grid:
  model: [lstm, transformer]
  p_ignore: [0.5, 0.8]
model_args:
  lstm: {n_layers: 1, hidden: 16, lr: 0.003}
  transformer: {n_layers: 1, d_model: 16, n_heads: 2, lr: 0.001}
fixed: {batch_size: 8, optimizer: adamw}
seeds: 2
max_steps: 20
eval: {every: 10, test_size: 16}
success: {metric: test_error, op: "<=", value: 0.6, stop_on_success: false}
"""

ONE_MODEL = """\
sweep: one
task: flipflop
task_args: {length: 12}
model: lstm
model_args: {n_layers: 1, hidden: 16}
grid:
  p_ignore: [0.5, 0.8]
fixed: {batch_size: 8, optimizer: adamw, lr: 0.003}
seeds: 2
max_steps: 20
eval: {every: 10, test_size: 16}
success: {metric: test_error, op: "<=", value: 0.6, stop_on_success: false}
"""


def test_each_model_gets_its_own_arguments():
    sweep = parse_yaml(COMPARE)
    assert sweep.model is None and sweep.task == "flipflop"
    assert axes(sweep) == ["model", "p_ignore"]
    trials = list(expand(sweep))
    assert len(trials) == 2 * 2 * 2
    by_model = {t.model: t for t in trials}
    assert by_model["lstm"].model_args.hidden == 16 and by_model["lstm"].train.lr == 0.003
    assert by_model["transformer"].model_args.d_model == 16 and by_model["transformer"].train.lr == 0.001
    names = parameter_names(sweep)
    assert {"hidden", "d_model", "n_heads", "p_ignore", "lr"} <= set(names)


def test_a_model_axis_of_one_value_gives_the_plain_sweeps_ids():
    plain = [t.trial_id for t in expand(parse_yaml(ONE_MODEL))]
    axis = ONE_MODEL.replace("model: lstm\nmodel_args: {n_layers: 1, hidden: 16}\ngrid:\n",
                             "model_args: {lstm: {n_layers: 1, hidden: 16}}\ngrid:\n  model: [lstm]\n")
    assert [t.trial_id for t in expand(parse_yaml(axis))] == plain
    # and the LSTM half of the comparison (its lr per model) holds the same trials as a sweep of its own
    lstm = {t.trial_id for t in expand(parse_yaml(COMPARE)) if t.model == "lstm"}
    assert lstm == set(plain)


def test_a_parameter_applies_where_the_model_has_it():
    # n_heads is a Transformer's: the LSTM's trials do not repeat over it (duplicates dropped)
    text = COMPARE.replace("  p_ignore: [0.5, 0.8]\n", "  p_ignore: [0.5]\n  n_heads: [1, 2]\n") \
        .replace(", n_heads: 2", "")
    trials = list(expand(parse_yaml(text)))
    assert sum(t.model == "lstm" for t in trials) == 2  # 2 seeds
    assert sorted(t.model_args.n_heads for t in trials if t.model == "transformer") == [1, 1, 2, 2]


def test_a_task_axis():
    text = """\
sweep: tasks
grid:
  task: [sparse_parity, relu_teacher]
  width: [16]
task_args:
  sparse_parity: {n: 10, k: 2}
  relu_teacher: {d: 10, k: 2}
model: mlp
seeds: 1
max_steps: 10
eval: {every: 5, test_size: 16}
"""
    trials = list(expand(parse_yaml(text)))
    assert [t.task for t in trials] == ["sparse_parity", "relu_teacher"]
    assert trials[0].task_args.n == 10 and trials[1].task_args.d == 10
    assert trials[0].train.loss != trials[1].train.loss  # each task's own default loss


@pytest.mark.parametrize("change, message", [
    (("grid:\n  model: [lstm, transformer]\n", "model: lstm\ngrid:\n  model: [lstm, transformer]\n"),
     "model: also an axis (grid.model); set it in one place"),
    (("model: [lstm, transformer]", "model: [lstm, gru]"), "grid.model: unknown grid.model 'gru'"),
    (("model: [lstm, transformer]", "model: lstm"), "grid.model: expected a list of models"),
    (("  lstm: {n_layers: 1, hidden: 16, lr: 0.003}\n", "  mlp: {width: 3}\n"),
     "model_args.mlp: 'mlp' is not a value of the model axis (lstm, transformer)"),
    (("hidden: 16", "d_model: 16"), "model_args.lstm.d_model: unknown parameter 'd_model' of model lstm"),
    (("fixed: {batch_size: 8", "zip: {model: [lstm]}\nfixed: {batch_size: 8"),
     "zip.model: model is also an axis in grid.model; set it in one place"),
    (("fixed: {batch_size: 8", "fixed: {hidden: 4, batch_size: 8"),
     "hidden: set both per value and in fixed; set it in one place"),
])
def test_bad_axes_are_one_line_errors(change, message):
    with pytest.raises(SpecError) as e:
        parse_yaml(COMPARE.replace(*change))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_one_sweep_compares_two_models_end_to_end(ray_cluster, tmp_path):
    spec = tmp_path / "compare.yaml"
    spec.write_text(COMPARE)
    store = tmp_path / "r"
    summary = paretolab.run(spec, store=store)
    assert (summary.ran, summary.failed) == (8, 0)
    st = paretolab.open_store(store)
    rows = st.query("SELECT model, count(*) AS n, count(DISTINCT hidden) AS h, count(DISTINCT d_model) AS d "
                    "FROM trials GROUP BY model ORDER BY model").to_pylist()
    assert rows == [{"model": "lstm", "n": 4, "h": 1, "d": 0}, {"model": "transformer", "n": 4, "h": 0, "d": 1}]
    for command in (["cells"], ["luck"], ["phases", "--axis", "p_ignore"]):
        out = subprocess.run(["paretolab", *command, "--store", str(store), "--sweep", "compare"],
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert "lstm" in out.stdout and "transformer" in out.stdout
    assert paretolab.run(spec, store=store).ran == 0  # resumed: nothing left


def test_functions_as_an_axis(tmp_path):
    for name, factor in (("a", 1), ("b", 2)):
        (tmp_path / f"{name}.py").write_text(
            f"def main(config, ctx):\n    ctx.report(step=0, loss=1.0 / (1 + {factor} * config['lr']))\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text("sweep: two\ngrid:\n  trainable: [a.py:main, b.py:main]\n  lr: [0.1, 1.0]\n"
                    "success: {metric: loss, op: '<=', value: 0.5}\n")
    from paretolab.spec import load_spec

    sweep = load_spec(spec)
    assert axes(sweep) == ["trainable", "lr"]
    trials = list(expand(sweep))
    assert [(t.code.name, dict(t.params)["lr"]) for t in trials] == \
        [("a.py:main", 0.1), ("a.py:main", 1.0), ("b.py:main", 0.1), ("b.py:main", 1.0)]
    assert trials[0].code.digest != trials[2].code.digest and trials[0].columns()["trainable"] == "a.py:main"
    # the ids of a's trials are those of a sweep of a alone
    spec.write_text("sweep: one\ntrainable: a.py:main\ngrid:\n  lr: [0.1, 1.0]\n"
                    "success: {metric: loss, op: '<=', value: 0.5}\n")
    assert [t.trial_id for t in expand(load_spec(spec))] == [t.trial_id for t in trials[:2]]
    spec.write_text("sweep: two\ngrid:\n  trainable: [a.py:main, c.py:main]\n")
    with pytest.raises(SpecError, match="trainable: no file 'c.py'"):
        load_spec(spec)

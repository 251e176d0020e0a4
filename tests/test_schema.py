"""The JSON Schema of a sweep spec (`paretolab.spec_schema`): every example validates against it,
specs the parser takes validate, bad specs of the bad-input table are refused by it too, the shipped
file is what the parser's constants build, and `paretolab schema` prints it without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from paretolab import spec_schema
from paretolab.cli import main
from paretolab.spec import load_spec
from paretolab.spec_yaml import load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples" / "own_code").rglob("*.yaml"))
REGENERATE = "python -m paretolab.spec_schema"


@pytest.fixture(scope="module")
def validator():
    return jsonschema.Draft202012Validator(spec_schema.builtin_schema())


def errors(validator, text: str) -> list[str]:
    return [e.message for e in validator.iter_errors(load(text, "spec.yaml"))]


def test_the_schema_is_valid_draft_2020_12():
    schema = spec_schema.builtin_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_shipped_file_is_what_the_parser_builds():
    shipped = json.loads(spec_schema.SCHEMA_FILE.read_text())
    assert shipped == spec_schema.builtin_schema(), f"paretolab/spec.schema.json is stale: regenerate it with `{REGENERATE}`"
    assert spec_schema.SCHEMA_FILE.read_text() == spec_schema.render(shipped), f"regenerate it with `{REGENERATE}`"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT / "examples")))
def test_every_example_names_the_schema_and_validates(path, validator):
    text = path.read_text()
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema="), first
    assert (path.parent / first.split("=", 1)[1]).resolve() == spec_schema.SCHEMA_FILE
    assert errors(validator, text) == []


OWN_CODE = "def main(config, ctx):\n    return {'loss': config['lr']}\n\n\ndef many(configs, ctxs):\n    return []\n"
ACCEPTED = {  # specs the parser takes, beyond the examples: the schema must never be the stricter one
    "numbers-as-text": "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: '1e3'\nfixed: {lr: 1e-3, batch_size: '8'}\n"
                       "grid: {width: {logspace: [4, 64, 3]}, n: {range: [10, 20, 5]}, train_size: [null, 100]}\n",
    "nulls": "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\ngrid:\nzip:\ntask_args:\neval:\nsuccess:\n"
             "resources:\nsearch:\ntune:\n",
    "model-axis": "sweep: a\ntask: flipflop\ngrid: {model: [lstm, transformer], p_ignore: [0.8]}\nmax_steps: 10\n"
                  "model_args: {lstm: {hidden: 8, lr: 0.01}, transformer: {d_model: 8, n_heads: 2}}\n",
    "zip-groups": "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\nseeds: [3, 7]\n"
                  "zip: [{init: [dense, sparse], sparsity: [null, 2]}, {width: [8, 16], lr: [0.1, 0.05]}]\n",
    "optuna": "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\nsearch: {sampler: random, n_trials: 4, "
              "space: {lr: {low: 0.01, high: 1, log: true}, width: [8, 16]}, objectives: {minimize: steps_to_success}}\n",
    "tune": "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: 10\nseeds: 3\ngrid: {width: [8, 16]}\n"
            "tune: {param: lr, values: [0.1, 0.3], select: max test_acc}\nresources: {cpu: 0.5, pack_size: 4}\n",
    "function": "sweep: a\ntrainable: train.py:main\nvectorized: train.py:many\npack_by: [width]\nversion: 2\n"
                "fixed: {width: 8, act: relu, bias: true}\ngrid: {lr: [0.1, 0.2]}\nsuccess: {metric: loss}\n"
                "keep_checkpoints: true\ncheckpoint_dir: ckpt\n",
    "command": "sweep: a\ncommand: python train.py --lr {lr}\ngrid: {lr: [0.1, 0.2]}\ntimeout_s: 1.5\nmax_steps: 5\n",
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_specs_the_parser_takes_validate(name, validator, tmp_path):
    (tmp_path / "train.py").write_text(OWN_CODE)
    path = tmp_path / "spec.yaml"
    path.write_text(ACCEPTED[name])
    load_spec(path)  # the parser takes it
    assert errors(validator, ACCEPTED[name]) == []


# rows of the bad-input table (tests/test_bad_input.py) whose spec the schema refuses as well
REFUSED = ("unknown-top-key", "missing-key", "unknown-task", "unknown-model", "unknown-metric", "unknown-param",
           "wrong-type-steps", "zero-steps", "negative-eval", "zero-seeds", "repeated-seed", "negative-seed",
           "string-lr", "bad-optimizer", "empty-axis", "zero-cpu", "zero-pack", "seed-2**63", "search-seed-2**32",
           "name-escape", "long-key", "own-no-function", "own-with-task", "own-with-eval", "own-and-command",
           "own-timeout", "own-version-bool", "own-keep-checkpoints", "own-result-column", "own-pack-by-alone",
           "command-empty", "command-vectorized")


@pytest.mark.parametrize("case", REFUSED)
def test_bad_specs_are_refused_by_the_schema_too(case, validator):
    from test_bad_input import CASES

    (spec,) = [spec for name, spec, _, _ in CASES if name == case]
    assert errors(validator, spec["spec.yaml"] if isinstance(spec, dict) else spec)


def test_the_schema_names_the_choices_an_editor_completes(validator):
    schema = spec_schema.builtin_schema()
    assert schema["properties"]["task"]["enum"] == ["automaton", "flipflop", "lm", "relu_teacher", "sparse_boolean",
                                                   "sparse_parity"]
    assert schema["$defs"]["train.optimizer"]["enum"] == ["sgd", "adam", "adamw"]
    assert schema["$defs"]["losses.sparse_parity"]["enum"] == ["hinge", "logistic", "square"]
    assert all(p.get("description") for p in schema["properties"].values())
    assert errors(validator, "sweep: a\ntask: sparse_parity\nmodel: mlp\nmax_steps: 9\nfixed: {loss: cross_entropy}\n")


def test_cli_prints_the_schema_with_the_installed_plugins(capsys, tmp_path):
    assert main(["schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert "exploding" in printed["properties"]["task"]["enum"]  # the test plug-in's task (tests/plugins)
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == printed


def test_cli_refuses_an_unwritable_output_in_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    assert main(["schema", "-o", str(tmp_path / "file" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: schema: cannot write ") and "Not a directory" in err


def without_plugins() -> dict:
    return {**os.environ, "PYTHONPATH": ""}  # the test plug-in is off the path: the shipped file is printed


def test_schema_command_imports_no_torch(tmp_path):
    code = (f"import sys\nfrom paretolab.cli import main\nassert main(['schema', '-o', {str(tmp_path / 's.json')!r}]) == 0\n"
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=without_plugins(), cwd="/")
    assert out.stdout.split()[-2:] == ["False", "False"], out.stderr
    assert (tmp_path / "s.json").read_text() == spec_schema.SCHEMA_FILE.read_text()


def test_building_the_schema_imports_no_torch():
    code = "import sys\nfrom paretolab import spec_schema\nspec_schema.builtin_schema()\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=without_plugins(), cwd="/")
    assert out.stdout.split() == ["False"], out.stderr

"""Bad input, refused cleanly: one line on stderr naming the problem and the fix, exit status 2, no
traceback, and nothing written to the store.

One table of (spec text or file bytes, argv, expected fragment of the message), run through the real
CLI: in process (`paretolab.cli.main`, stderr captured) for the whole table, and as subprocesses for
a few rows, so that nothing reaches stderr from outside `main` either.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from paretolab.cli import main
from paretolab.clusters.connect import this_machine

SPEC = """\
sweep: bad
task: sparse_parity
task_args: {n: 10, k: 2}
model: mlp
grid:
  width: [16, 32]
fixed: {lr: 0.1, batch_size: 32}
seeds: 2
max_steps: 100
eval: {every: 50, test_size: 64}
success: {metric: test_error, op: "<=", value: 0.1}
"""


def edit(old: str, new: str) -> str:
    """The valid spec with one piece of text replaced (the replaced text must be there)."""
    assert old in SPEC, old
    return SPEC.replace(old, new)


def python_spec(body: str) -> tuple[str, str]:
    """A Python spec (file name, text): the valid spec's keys in SPEC, then `body`."""
    return "spec.py", ('SPEC = {"task": "sparse_parity", "task_args": {"n": 10, "k": 2}, "model": "mlp", "max_steps": 100}\n'
                       + body)


OWN = """\
sweep: own
trainable: train.py:main
grid: {lr: [0.1, 0.2]}
success: {metric: loss, op: "<=", value: 0.1}
"""
TRAIN_PY = """\
def main(config, ctx):
    return {"loss": config["lr"]}


def main_many(configs, ctxs):
    return [{"loss": c["lr"]} for c in configs]


not_callable = 3
"""


def own(old: str = "", new: str = "", **files: str) -> dict[str, str]:
    """A sweep of the researcher's own function: the files of its folder (spec.yaml, train.py and
    `files`), with `old` replaced by `new` in the spec (or `new` added when there is no `old`)."""
    assert old in OWN, old
    return {"spec.yaml": OWN.replace(old, new) if old else OWN + new, "train.py": TRAIN_PY, **files}


# "billion laughs": nine levels of nine aliases, 9^9 strings in a few hundred bytes (inside a value)
LAUGHS = "{" + ", ".join([f"a0: &a0 [{', '.join(['lol'] * 9)}]"]
                         + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]) + "}"


RUN = ("run", "{spec}", "--store", "{new}")
COMMAND = """\
sweep: cmd
command: [python, train.py, --lr, "{lr}"]
grid: {lr: [0.1, 0.2]}
success: {metric: loss, op: "<=", value: 0.1}
"""
ON = ("--sweep", "s", "--store", "{store}")

# (id, spec text or file bytes (None: the valid spec), argv with placeholders, fragment of the message)
CASES = [
    # specs: syntax, types, sizes, names
    ("yaml-syntax", "sweep: bad\ngrid: [width: 16\n", RUN, "invalid YAML at line"),
    ("yaml-tab", "sweep: bad\n\tmodel: mlp\n", RUN, "invalid YAML at line 2"),
    ("not-a-mapping", "- sweep: bad\n", RUN, "a spec is a mapping of keys"),
    ("non-utf8", b"sweep: b\xffd\n", RUN, "not UTF-8 text (byte 8); save the spec as UTF-8"),
    ("missing-key", edit("max_steps: 100\n", ""), RUN, "max_steps: required key is missing; add it"),
    ("unknown-top-key", SPEC + "epochs: 3\n", RUN, "epochs: unknown key; allowed: sweep, task"),
    ("unknown-task", edit("task: sparse_parity", "task: parity"), RUN, "unknown task 'parity'; known:"),
    ("unknown-model", edit("model: mlp", "model: resnet"), RUN, "unknown model 'resnet'; known:"),
    ("unknown-metric", edit("metric: test_error", "metric: test_f1"), RUN, "unknown metric 'test_f1' for task"),
    ("unknown-param", edit("width:", "widht:"), RUN, "unknown parameter 'widht'; known:"),
    ("wrong-type-steps", edit("max_steps: 100", "max_steps: ten"), RUN, "max_steps: expected an integer, got 'ten'"),
    ("zero-steps", edit("max_steps: 100", "max_steps: 0"), RUN, "max_steps: expected an integer >= 1, got 0"),
    ("negative-eval", edit("every: 50", "every: -5"), RUN, "eval.every: expected an integer >= 1, got -5"),
    ("zero-test-size", edit("test_size: 64", "test_size: 0"), RUN, "eval.test_size: expected an integer >= 1"),
    ("zero-seeds", edit("seeds: 2", "seeds: 0"), RUN, "seeds: a count must be >= 1, got 0"),
    ("repeated-seed", edit("seeds: 2", "seeds: [1, 1]"), RUN, "seeds: the list repeats a seed"),
    ("negative-seed", edit("seeds: 2", "seeds: [-1]"), RUN, "a seed is an integer in 0..2**63-1, got -1"),
    ("zero-width", edit("[16, 32]", "[0, 16]"), RUN, "width"),
    ("negative-batch", edit("batch_size: 32", "batch_size: -4"), RUN, "batch_size must be >= 1, got -4"),
    ("string-lr", edit("lr: 0.1", "lr: fast"), RUN, "fixed.lr: expected a finite number, got 'fast'"),
    ("bad-optimizer", SPEC.replace("lr: 0.1", "lr: 0.1, optimizer: rmsprop"), RUN,
     "'rmsprop' is not allowed; allowed: sgd, adam, adamw"),
    ("k-greater-than-n", edit("{n: 10, k: 2}", "{n: 10, k: 12}"), RUN, "k"),
    ("empty-axis", edit("[16, 32]", "[]"), RUN, "grid.width: an axis needs at least one value, got []"),
    ("empty-range", edit("[16, 32]", "{range: [32, 16]}"), RUN, "is empty (stop is exclusive"),
    ("zero-cpu", SPEC + "resources: {cpu: 0}\n", RUN, "resources: cpu must be > 0"),
    ("zero-pack", SPEC + "resources: {pack_size: 0}\n", RUN, "resources.pack_size: expected an integer >= 1"),
    ("zero-attempts", SPEC + "max_attempts: 0\n", RUN, "max_attempts: expected an integer >= 1, got 0"),
    # resources no node has: refused once Ray is up, before a worker waits forever to be placed (Ray's
    # CPUs in these tests: 2; the GPU row where this machine has none, as on the 2-core test machines)
    *([("gpu-on-cpu-only", SPEC + "resources: {gpu: 1}\n", RUN,
        "resources: a worker needs 1 GPU; the cluster has none (CPUs: ")] if not this_machine()[0][1] else []),
    ("cpus-no-node-has", SPEC + "resources: {cpu: 64}\n", RUN, "resources: a worker needs 64 CPUs; the cluster has "),
    ("gpus-with-workers", SPEC + "resources: {gpu: 64}\n", (*RUN, "--workers", "1"), "resources: a worker needs 64 GPUs"),
    ("huge-grid", edit("[16, 32]", "{range: [1, 1201]}").replace("seeds: 2", "seeds: 10000"), RUN,
     "grid has 12,000,000 trials (> 10,000,000); pass --yes to run it, or --dry-run to look first"),
    # specs: what a terminal, the store, the generators or the parser cannot take
    ("name-escape", edit("sweep: bad", 'sweep: "bad\\e[2J"'), RUN,
     "sweep: a name cannot hold control characters, got 'bad\\x1b[2J'; use letters"),
    ("name-newline", edit("sweep: bad", 'sweep: "bad\\nname"'), RUN, "a name cannot hold control characters"),
    ("seed-1e20", edit("seeds: 2", "seeds: [100000000000000000000]"), RUN,
     "seeds: a seed is an integer in 0..2**63-1, got 100000000000000000000"),
    ("seed-2**63", edit("seeds: 2", "seeds: [0, 9223372036854775808]"), RUN,
     "seeds: a seed is an integer in 0..2**63-1, got 9223372036854775808"),
    ("seed-count-1e20", edit("seeds: 2", "seeds: 100000000000000000000"), RUN,
     "seeds: a count must be at most 1,000,000 (seeds per grid point), got 100000000000000000000"),
    ("search-seed-2**32", edit("grid:\n  width: [16, 32]\n", "") + "search: {n_trials: 2, seed: 4294967296, "
     "space: {width: [16, 32]}, objectives: [{minimize: width}]}\n", RUN,
     "search.seed: a seed is an integer in 0..2**31-1, got 4294967296"),
    ("python-exit", python_spec("import sys\nsys.exit(0)\n"), RUN,
     "spec.py: the spec called sys.exit(0); a spec defines trials() (and SPEC) and returns: remove the exit"),
    ("python-trials-exit", python_spec("import sys\ndef trials():\n    yield {'width': 8}\n    sys.exit('done')\n"),
     RUN, "spec.py: trials() called sys.exit('done')"),
    ("yaml-duplicate-key", SPEC + "max_steps: 200\n", RUN,
     "invalid YAML at line 12, column 1: key 'max_steps' is set twice (first at line 9, column 1); keep one"),
    ("yaml-duplicate-nested-key", edit("{lr: 0.1, batch_size: 32}", "{lr: 0.1, batch_size: 32, lr: 1}"), RUN,
     "invalid YAML at line 7, column 34: key 'lr' is set twice (first at line 7, column 9); keep one"),
    ("yaml-alias-bomb", edit("lr: 0.1", f"lr: {LAUGHS}"), RUN,
     "the spec holds more than 1,000,000 values once its aliases (*name) are expanded; write its values out"),
    ("yaml-recursive-alias", edit("[16, 32]", "&w [16, *w]"), RUN, "an alias refers to a value that contains it"),
    ("yaml-deep", edit("[16, 32]", "[" * 5000 + "]" * 5000), RUN, "invalid YAML: nested too deeply"),
    ("long-value", edit("lr: 0.1", f"lr: {'x' * 1_000_000}"), RUN,
     "fixed.lr: expected a finite number, got 'xxxxxxxxxx"),  # ... 'xxx'... (1,000,000 characters)
    ("long-string-value", edit("lr: 0.1", f"loss: {'x' * 1_000_000}"), RUN, "... (1,000,000 characters)"),
    ("long-key", edit("lr: 0.1", f"{'x' * 1000}: 1"), RUN, "fixed: keys must be names (at most 100 characters), got 'xxx"),
    # specs of the researcher's own function: the code named, and the keys that go with it
    ("own-syntax-error", own("train.py:main", "broken.py:main", **{"broken.py": "def main(:\n"}), RUN,
     "trainable: broken.py does not import: SyntaxError: invalid syntax ("),
    ("own-import-error", own("train.py:main", "noimport.py:main", **{"noimport.py": "import not_a_module_anywhere\n"}),
     RUN, "trainable: noimport.py does not import: ModuleNotFoundError: No module named 'not_a_module_anywhere' "
          "(noimport.py:1)"),
    ("own-no-module", own("train.py:main", "not_a_package_anywhere.train:main"), RUN,
     "trainable: not_a_package_anywhere.train does not import: ModuleNotFoundError: No module named "
     "'not_a_package_anywhere'"),
    ("own-no-name", own("train.py:main", "train.py:nope"), RUN, "trainable: train.py has no 'nope'"),
    ("own-not-callable", own("train.py:main", "train.py:not_callable"), RUN,
     "trainable: train.py:not_callable is not a function (a value of type int)"),
    ("own-no-file", own("train.py:main", "missing.py:main"), RUN, "trainable: no file 'missing.py' in the spec's folder"),
    ("own-no-function", own("train.py:main", "train.py"), RUN,
     "trainable: expected module:function or file.py:function (e.g. train.py:main), got 'train.py'"),
    ("own-empty-function", own("train.py:main", "'train.py:'"), RUN,
     "trainable: expected module:function or file.py:function, got 'train.py:'"),
    ("own-list", own("train.py:main", "[train.py, main]"), RUN,
     "trainable: expected module:function or file.py:function (e.g. train.py:main), got ['train.py', 'main']"),
    ("own-with-task", own(new="task: sparse_parity\n"), RUN, "task: applies to built-in trials, not to your own code"),
    ("own-with-model-args", own(new="model_args: {width: 16}\n"), RUN,
     "model_args: applies to built-in trials, not to your own code; give your code's parameters under fixed, grid or zip"),
    ("own-with-eval", own(new="eval: {every: 10}\n"), RUN, "eval: applies to built-in trials, not to your own code"),
    ("own-and-command", own(new="command: [python, train.py]\n"), RUN,
     "trainable, command: a sweep runs one or the other; keep one"),
    ("own-timeout", own(new="timeout_s: 5\n"), RUN,
     "timeout_s: ends a command that hangs; a function cannot be ended from outside"),
    ("own-version", own(new="version: [1]\n"), RUN, "version: expected a string or a number (e.g. 3, or"),
    ("own-version-bool", own(new="version: true\n"), RUN, "version: expected a string or a number (e.g. 3, or"),
    ("own-keep-checkpoints", own(new="keep_checkpoints: 3\n"), RUN, "keep_checkpoints: expected true or false, got 3"),
    ("own-checkpoint-dir", own(new="checkpoint_dir: ''\n"), RUN,
     "checkpoint_dir: expected a folder or a URI (s3://bucket/prefix), got ''"),
    ("own-pack-by-unknown", own(new="vectorized: train.py:main_many\npack_by: [depth]\n"), RUN,
     "pack_by: expected a list of the sweep's parameters (lr), got ['depth']"),
    ("own-pack-by-alone", own(new="pack_by: [lr]\n"), RUN,
     "pack_by: says which trials a vectorized function trains together; set `vectorized:` too"),
    ("own-vectorized-no-name", own(new="vectorized: train.py:nope\n"), RUN, "vectorized: train.py has no 'nope'"),
    ("own-result-column", own(new="fixed: {status: 1}\n"), RUN, "fixed.status: 'status' is the name of a result column; rename the parameter"),
    ("own-max-steps-fixed", own(new="fixed: {max_steps: 100}\n"), RUN, "fixed.max_steps: max_steps is a top-level key of the spec; set `max_steps: N` there"),
    ("own-mixed-kinds", own("[0.1, 0.2]", "[0.1, fast]"), RUN,
     "grid.lr: the values mix number and str ([0.1, 'fast']); give one parameter values of one kind"),
    ("own-not-scalar", own(new="fixed: {layers: [1, 2]}\n"), RUN,
     "fixed.layers: a parameter's value is a number, a string, true/false or null, got [1, 2]"),
    ("own-success-metric", own("metric: loss", "metric: test error"), RUN,
     "success.metric: expected the name of a metric your code reports, got 'test error'"),
    # specs of a command
    ("command-not-found", {"spec.yaml": COMMAND.replace("python, train.py", "pythn, train.py")}, RUN,
     "command: 'pythn' not found (not on PATH, not a file of the spec's folder)"),
    ("command-unknown-placeholder", {"spec.yaml": COMMAND.replace("{lr}", "{lrr}")}, RUN,
     "command: the placeholder {lrr} names no parameter; parameters: attempt, checkpoint_dir, device, lr, seed, "
     "trial_id, workdir"),
    ("command-unclosed-brace", {"spec.yaml": COMMAND.replace('"{lr}"', '"{lr"')}, RUN, "command: "),
    ("command-empty", {"spec.yaml": COMMAND.replace("[python, train.py, --lr, \"{lr}\"]", "[]")}, RUN,
     "command: the command is empty"),
    ("command-not-a-list", {"spec.yaml": COMMAND.replace("[python, train.py, --lr, \"{lr}\"]", "{a: 1}")}, RUN,
     "command: expected a list of arguments or a string"),
    ("command-bad-quotes", {"spec.yaml": COMMAND.replace("[python, train.py, --lr, \"{lr}\"]", "'python \"train.py'")},
     RUN, "command: No closing quotation"),
    ("command-timeout", {"spec.yaml": COMMAND + "timeout_s: -1\n"}, RUN, "timeout_s: expected seconds > 0, got -1"),
    ("command-vectorized", {"spec.yaml": COMMAND + "vectorized: train.py:main\n"}, RUN,
     "vectorized: packs a function's trials; a command is never packed"),
    ("command-special-name", {"spec.yaml": COMMAND.replace("grid: {lr: [0.1, 0.2]}", "grid: {lr: [0.1], workdir: [a]}")},
     RUN, "workdir: names what a command's placeholder {workdir} gives"),
    # run: files and arguments
    ("missing-spec", None, ("run", "{tmp}/missing.yaml", "--store", "{new}"), "missing.yaml: no such spec file"),
    ("spec-suffix", None, ("run", "{json}", "--store", "{new}"), "unknown spec format '.json'; use .yaml"),
    ("zero-workers", None, ("run", "{spec}", "--store", "{new}", "--workers", "0"), "--workers must be >= 1, got 0"),
    ("workers-type", None, ("run", "{spec}", "--store", "{new}", "--workers", "two"), "invalid int value: 'two'"),
    ("unwritable-store", None, ("run", "{spec}", "--store", "{file}/results"), "Not a directory; pass --store a folder you can write"),
    # the store and its sweeps
    ("query-copy", None, ("query", "COPY (SELECT 1) TO 'out.csv'", "--store", "{store}"),
     "query only reads (SELECT, WITH ..., EXPLAIN of a SELECT), got COPY; use `paretolab export`"),
    ("query-two-statements", None, ("query", "SELECT 1; SELECT 2", "--store", "{store}"),
     "query takes one statement, got 2; run them one at a time"),
    # queries that would write a file (a store file too) or reach the network
    ("query-explain-analyze-copy", None, ("query", "EXPLAIN ANALYZE COPY (SELECT 1) TO '{store}/trials/x.parquet'",
                                          "--store", "{store}"), "query refuses EXPLAIN ANALYZE: it runs the statement"),
    ("query-explain-options-analyze", None, ("query", "/* c */ EXPLAIN (FORMAT json, ANALYZE) SELECT 1", "--store", "{store}"),
     "query refuses EXPLAIN ANALYZE"),
    ("query-explain-copy", None, ("query", "EXPLAIN COPY (SELECT 1) TO 'x.csv'", "--store", "{store}"),
     "query only reads (SELECT, WITH ..., EXPLAIN of a SELECT), got COPY"),
    ("query-url", None, ("query", "SELECT * FROM 'https://example.com/a.parquet'", "--store", "{store}"),
     "a query reads only the store's views, not other files, URLs or extensions: Permission Error"),
    ("query-other-file", None, ("query", "SELECT * FROM read_csv('/etc/passwd')", "--store", "{store}"),
     "a query reads only the store's views, not other files"),
    ("query-glob-store", None, ("query", "SELECT * FROM read_parquet('{store}/trials/*.parquet')", "--store", "{store}"),
     "a query reads only the store's views"),
    ("query-attach", None, ("query", "ATTACH '{store}/x.db'", "--store", "{store}"), "got ATTACH"),
    ("query-install", None, ("query", "INSTALL httpfs", "--store", "{store}"), "got LOAD"),
    ("query-set", None, ("query", "SET enable_external_access = true", "--store", "{store}"), "got SET"),
    ("status-no-store", None, ("status", "--store", "{new}"), "no result store at"),
    ("status-unknown-sweep", None, ("status", "--sweep", "nope", "--store", "{store}"), "unknown sweep 'nope'"),
    ("sweeps-no-store", None, ("sweeps", "--store", "{new}"), "no result store at"),
    ("compact-no-store", None, ("compact", "--store", "{new}"), "or pass --store PATH"),
    # a folder that is not a store: read as an empty store it would hide the mistake; run would write into it
    ("query-table-folder", None, ("query", "SELECT 1", "--store", "{store}/trials"), "is the trials table folder of the store"),
    ("status-table-folder", None, ("status", "--store", "{store}/metrics"), "is the metrics table folder of the store"),
    ("cells-not-a-store", None, ("cells", "--sweep", "s", "--store", "{tmp}"), "holds no paretolab store (no trials/, metrics/ or sweeps/"),
    ("doctor-not-a-store", None, ("doctor", "--store", "{tmp}"), "holds no paretolab store"),
    ("compact-not-a-store", None, ("compact", "--store", "{tmp}"), "holds no paretolab store"),
    ("run-not-a-store", None, ("run", "{spec}", "--store", "{tmp}"), "holds no paretolab store"),
    ("run-table-folder", None, ("run", "{spec}", "--store", "{store}/sweeps"), "is the sweeps table folder"),
    ("query-parse", None, ("query", "SELEC 1", "--store", "{store}"), "query failed: Parser Error: syntax error at or near \"SELEC\" (fix the SQL; views: trials"),
    ("query-table", None, ("query", "SELECT * FROM nothing", "--store", "{store}"), "nothing does not exist"),
    ("query-column", None, ("query", "SELECT wdth FROM trials", "--store", "{store}"), "wdth"),
    ("query-sweep", None, ("query", "SELECT 1", "--sweep", "nope", "--store", "{store}"), "unknown sweep 'nope'"),
    ("query-format", None, ("query", "SELECT 1", "--format", "xml", "--store", "{store}"), "invalid choice: 'xml'"),
    ("query-cast", None, ("query", "SELECT 'wide'::INT", "--store", "{store}"), "Conversion Error"),
    # analysis commands
    ("cells-sweep", None, ("cells", "--sweep", "nope", "--store", "{store}"), "unknown sweep 'nope'"),
    ("cells-axis", None, ("cells", *ON, "--axes", "depth"), "unknown axis 'depth'"),
    ("cells-success", None, ("cells", *ON, "--success", "test_error=<"), "bad success criterion"),
    ("cells-metric", None, ("cells", *ON, "--success", "test_f1<=0.1"), "unknown metric 'test_f1'"),
    ("frontier-objective", None, ("frontier", *ON, "--minimize", "cost"), "unknown objective 'cost'"),
    ("frontier-prob", None, ("frontier", *ON, "--success-prob", "2"), "must be in [0, 1], got 2"),
    ("frontier-by", None, ("frontier", *ON, "--by", "depth"), "unknown --by axis 'depth'"),
    ("luck-target", None, ("luck", *ON, "--target", "1.5"), "target must be a probability in (0, 1), got 1.5"),
    ("luck-cost", None, ("luck", *ON, "--cost", "dollars"), "invalid choice: 'dollars'"),
    ("phases-neither", None, ("phases", *ON), "phases needs --axis AXIS"),
    ("phases-axis", None, ("phases", *ON, "--axis", "depth"), "unknown axis 'depth'"),
    ("fit-x", None, ("fit", *ON, "--x", "depth"), "unknown axis 'depth'"),
    ("fit-boot", None, ("fit", *ON, "--x", "width", "--n-boot", "-1"), "n_boot must be >= 0, got -1"),
    ("fit-missing-x", None, ("fit", *ON), "--form power needs --x"),
    ("fit-no-source", None, ("fit", "--x", "width"), "give --sweep NAME (a sweep of the store) or --from FILE"),
    ("fit-both-sources", None, ("fit", *ON, "--from", "{tmp}/t.csv", "--x", "width"), "one of them"),
    ("fit-from-missing", None, ("fit", "--from", "{tmp}/nope.csv", "--x", "a", "--y", "b"), "no such file"),
    ("fit-from-roles", None, ("fit", "--from", "{tmp}/nope.csv", "--form", "chinchilla"), "needs --n, --d, --y"),
    ("fit-form", None, ("fit", *ON, "--form", "cubic"), "invalid choice: 'cubic'"),
    ("fit-breaks", None, ("fit", *ON, "--x", "width", "--breaks", "2"), "--breaks goes with --form broken"),
    ("fit-censored-cost", None, ("fit", *ON, "--form", "censored", "--x", "width", "--y", "final_test_error"),
     "--form censored fits a cost to success"),
    ("optimal-budgets", None, ("optimal", *ON, "--budgets", "lots"), "--budgets 'lots': comma-separated numbers"),
    ("plot-suffix", None, ("plot", "phase", *ON, "-o", "{tmp}/p.bmp"), "cannot write a plot as '.bmp'"),
    ("plot-kind", None, ("plot", "pie", *ON, "-o", "{tmp}/p.png"), "invalid choice: 'pie'"),
    ("plot-fit-x", None, ("plot", "fit", *ON, "-o", "{tmp}/p.png"), "plot fit needs --x AXIS"),
    ("plot-metric", None, ("plot", "curves", *ON, "--metric", "test_f1", "-o", "{tmp}/p.png"),
     "unknown metric 'test_f1'; recorded: test_error"),  # metrics only: not trial_id, attempt, step, ...
    ("report-sweep", None, ("report", "--sweep", "nope", "--store", "{store}", "-o", "{tmp}/r.html"), "unknown sweep 'nope'"),
    ("export-sweep", None, ("export", "--sweep", "nope", "--store", "{store}", "-o", "{tmp}/e"), "unknown sweep 'nope'"),
    ("export-out", None, ("export", "--sweep", "s", "--store", "{store}", "-o", "{file}/e"), "Not a directory; pass -o a folder you can write"),
    ("tasks-format", None, ("tasks", "--format", "xml"), "invalid choice: 'xml'"),
    ("models-argument", None, ("models", "mlp"), "unrecognized arguments: mlp"),
    ("unknown-command", None, ("frob",), "invalid choice: 'frob'"),
    ("no-command", None, (), "the following arguments are required: command"),
]
# rows also run as subprocesses: a spec error, an argparse error, a store error, a query error, a
# spec that exits, a name that would rewrite the terminal, code that does not import
IN_SUBPROCESS = ("gpu-on-cpu-only", "yaml-syntax", "huge-grid", "workers-type", "unwritable-store", "query-parse", "export-out",
                 "python-exit", "name-escape", "own-import-error")


@pytest.fixture
def place(tmp_path, make_store):
    """Fill the placeholders: the spec, a synthetic store `s`, a path where no store is, a plain file."""
    store = make_store(tmp_path / "store", "s", ["width", "train_size"], [
        {"trial_id": f"t{w}{m}{seed}", "width": w, "train_size": m, "success": seed < w // 16,
         "steps_to_success": 100 * m if seed < w // 16 else None, "samples_to_success": 3200 * m,
         "flops_to_success": 1e6 * w * m, "n_params": 10 * w}
        for w in (16, 32, 64) for m in (1, 2, 4) for seed in range(3)],
        [{"trial_id": "t1610", "step": s, "samples": 32 * s, "test_error": 0.5 - s / 1000} for s in (0, 100, 200)])
    (tmp_path / "spec.json").write_text("{}")
    (tmp_path / "file").write_text("a plain file, not a folder\n")
    return {"tmp": str(tmp_path), "store": str(store), "new": str(tmp_path / "new"), "file": str(tmp_path / "file"),
            "json": str(tmp_path / "spec.json"), "spec": str(tmp_path / "spec.yaml")}


def snapshot(root: Path) -> dict[str, bytes] | None:
    """Every file under `root` with its bytes; None when there is no such folder."""
    if not root.exists():
        return None
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def prepare(spec, place) -> list[str]:
    if isinstance(spec, dict):  # the files of the spec's folder: spec.yaml and the code it names
        for name, text in spec.items():
            (Path(place["tmp"]) / name).write_text(text)
        return place
    if isinstance(spec, tuple):  # (file name, text): a spec of another kind
        place["spec"] = str(Path(place["tmp"]) / spec[0])
        spec = spec[1]
    path = Path(place["spec"])
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    else:
        path.write_text(SPEC if spec is None else spec)
    return place


def check(code: int, stderr: str, fragment: str, before, place) -> None:
    lines = stderr.splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].strip(), stderr[:2000]
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0][:2000]
    assert len(lines[0]) <= 1000, f"{len(lines[0])} characters: {lines[0][:2000]}"  # every echo of a value is bounded
    assert lines[0].isprintable(), lines[0]  # no escape sequence, no control character reaches the terminal
    assert "Traceback" not in stderr
    assert snapshot(Path(place["store"])) == before  # nothing written to the store
    assert not Path(place["new"]).exists()  # and no store created


STARTS_RAY = ("gpus-with-workers", "gpu-on-cpu-only", "cpus-no-node-has")  # refused once Ray reports its nodes


@pytest.mark.parametrize("spec, argv, fragment", [
    pytest.param(*c[1:], marks=pytest.mark.slow if c[0] in STARTS_RAY else ()) for c in CASES], ids=[c[0] for c in CASES])
def test_refused_in_process(spec, argv, fragment, place, capsys, monkeypatch):
    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    prepare(spec, place)
    before = snapshot(Path(place["store"]))
    capsys.readouterr()
    code = main([a.format(**place) for a in argv])
    out = capsys.readouterr()
    check(code, out.err, fragment, before, place)
    assert out.out == ""


@pytest.mark.slow  # a CLI process each
@pytest.mark.parametrize("spec, argv, fragment", [c[1:] for c in CASES if c[0] in IN_SUBPROCESS],
                         ids=[c[0] for c in CASES if c[0] in IN_SUBPROCESS])
def test_refused_in_a_subprocess(spec, argv, fragment, place):
    prepare(spec, place)
    before = snapshot(Path(place["store"]))
    env = {k: v for k, v in os.environ.items() if k not in ("PARETOLAB_STORE", "RAY_ADDRESS")}
    out = subprocess.run(["paretolab", *(a.format(**place) for a in argv)], capture_output=True, text=True,
                         env=env, timeout=120)
    check(out.returncode, out.stderr, fragment, before, place)
    assert out.stdout == ""


def test_the_table_is_large_and_covers_every_command():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30
    covered = {c[2][0] for c in CASES if c[2]}
    assert covered >= {"run", "status", "query", "sweeps", "cells", "frontier", "luck", "phases", "fit", "plot",
                       "report", "export", "compact", "tasks", "models", "optimal"}


def test_a_grid_too_large_to_run_without_yes_dry_runs_without_expanding(place, capsys, monkeypatch):
    """What the refusal suggests works: a dry run counts the 12,000,000 trials and shows the first ones
    without expanding the grid (which would take minutes and gigabytes) or creating a store."""
    import paretolab.orchestrator.grid as grid

    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    huge = edit("[16, 32]", "{range: [1, 1201]}").replace("seeds: 2", "seeds: 10000")
    prepare(huge, place)
    drawn = []
    real = grid.expand

    def counting_expand(sweep):
        for t in real(sweep):
            drawn.append(t)
            yield t

    monkeypatch.setattr(grid, "expand", counting_expand)
    assert main(["run", place["spec"], "--store", place["new"], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12,000,000 trials (not checked against" in out and "... and 11,999,995 more" in out
    assert "width=1 " in out and len(drawn) <= 6
    assert not Path(place["new"]).exists()


# ---------------------------------------------------------------- what the table cannot hold


@pytest.fixture(params=["pwrite-enospc", "full-tmpfs"])
def full_disk(request, tmp_path, monkeypatch):
    """A folder on a full disk: a real full tmpfs where this process may mount one (root, no
    container policy against it), and everywhere an `os.pwrite` that fails as a full disk does
    (ENOSPC) while the lock's holder is written; yields the folder."""
    import errno
    import shutil

    if request.param == "pwrite-enospc":
        def full(fd, data, offset):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "pwrite", full)
        yield tmp_path / "disk"
        return
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (the pwrite-enospc case covers the same refusal)")
    try:
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        with pytest.raises(OSError):  # 64 KiB of zeros, and then the disk is full
            while True:
                os.write(filler, b"\0" * 4096)
        os.close(filler)
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_while_taking_the_lock_is_one_line(full_disk, place, capsys, monkeypatch):
    """A run refused because the disk is full when it takes the store's lock prints one line, and
    leaves neither a `.lock` nor a store folder behind (a new store, two folders deep) or anything
    changed (an existing store)."""
    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    prepare(None, place)
    stores = [full_disk / "results" / "new"]
    if not full_disk.is_mount():  # the existing store lives on the real disk: only pwrite is full there
        stores.append(Path(place["store"]))
    for store in stores:
        before = snapshot(store)
        capsys.readouterr()
        code = main(["run", place["spec"], "--store", str(store)])
        out = capsys.readouterr()
        check(code, out.err, f"cannot write the result store at {store}: No space left on device; free some "
                             "space or pass --store another folder", snapshot(Path(place["store"])), place)
        assert snapshot(store) == before
        assert not (full_disk / "results").exists()
        assert out.out == ""


@pytest.mark.slow  # the S3 client retries for seconds
def test_an_unreachable_s3_store_is_one_line_naming_it(place, capsys, monkeypatch):
    """An S3 endpoint nobody listens on: one line naming the store, in bounded time (the S3
    client's retries; nothing waits for a network timeout as a port that refuses answers at once)."""
    import time

    for key, value in {"AWS_ENDPOINT_URL": "http://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    prepare(None, place)
    before = snapshot(Path(place["store"]))
    capsys.readouterr()
    start = time.monotonic()
    code = main(["run", place["spec"], "--store", "s3://bucket/x"])
    out = capsys.readouterr()
    check(code, out.err, "cannot reach the store s3://bucket/x: ", before, place)
    assert "check the endpoint, the network and the credentials" in out.err
    assert time.monotonic() - start < 60  # about 6 s: the S3 client's ten retries, backing off
    assert out.out == ""


def test_names_are_shown_not_obeyed(place, capsys, monkeypatch):
    """Markup-like brackets are a legitimate sweep name (shown as written, the results are not
    lost to a rich MarkupError); escape sequences in a path or a value reach the terminal escaped.
    Dry runs and a query: no Ray (a real run of such a name: the next test)."""
    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    prepare(edit("sweep: bad", 'sweep: "x[/bold] [red]{y}"'), place)
    assert main(["run", place["spec"], "--store", place["new"], "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"x[/bold] [red]{{y}}: 4 trials, 0 already in {place['new']}, 4 to run\n"), out

    odd = str(Path(place["tmp"]) / "s\x1b[2J\x9b[31m[/]")
    assert main(["run", place["spec"], "--store", odd, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "s\\x1b[2J\\x9b[31m[/]" in out and "\x1b" not in out and "\x9b" not in out, out
    assert not Path(odd).exists()

    assert main(["query", "SELECT chr(27) || '[2J[/b]' || chr(10) || 'x' AS \"[/h]\"", "--store", place["store"]]) == 0
    out = capsys.readouterr().out
    assert "\\x1b[2J[/b]" in out and "[/h]" in out and "\x1b" not in out, out


def test_a_sweep_named_like_markup_runs_and_is_shown_as_written(ray_cluster, place, capsys, monkeypatch, tmp_path):
    """The name `x[/bold]` once failed in the summary after its results were written."""
    monkeypatch.delenv("PARETOLAB_STORE", raising=False)
    name = "x[/bold] [red]{y}"
    prepare(edit("sweep: bad", f'sweep: "{name}"').replace("[16, 32]", "[16]").replace("seeds: 2", "seeds: 1")
            .replace("max_steps: 100", "max_steps: 4").replace("every: 50", "every: 2"), place)
    assert main(["run", place["spec"], "--store", place["new"]]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert f"{name}: 1 trials (1 run now, 0 already in the store)" in out.out
    assert f"  paretolab status --store {place['new']} --sweep '{name}'\n" in out.out
    for command in ("status", "sweeps"):
        assert main([command, "--store", place["new"]]) == 0
        assert name in capsys.readouterr().out

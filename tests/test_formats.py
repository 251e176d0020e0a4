"""`--format csv` and `--format json` read by standard tools, over a real store.

One real sweep of a researcher's function runs once: one trial's loss is NaN (a diverged run), the
other's is a number, no trial fails (so `error` is NULL in every row). Its query results, nested
columns and NaN included, must parse with the csv module and pandas, and with strict JSON; DESCRIBE
must give every column a real type.
"""

from __future__ import annotations

import csv
import io
import json
import math

import pandas as pd
import pytest

import paretolab
from paretolab.cli import main

TRAIN = '''
def main(config, ctx):
    for step in range(3):
        ctx.report(step=step, loss=float("nan") if config["lr"] > 1 else 1.0 / (1 + step))
'''

SPEC = """\
sweep: nan
trainable: train.py:main
grid: {lr: [0.1, 10.0]}
seeds: 1
max_steps: 2
success: {metric: loss, op: "<=", value: 0.01}
"""

# nested values, a NaN, NULL, and strings that do and do not need quoting
SQL = ("SELECT t.lr, m.step, m.loss, [m.step, m.step + 1] AS steps, {'loss': m.loss, 'lr': t.lr} AS point, "
       "t.error, 'plain' AS word, 'a,b \"c\"' AS text FROM metrics m JOIN trials t USING (trial_id) "
       "ORDER BY t.lr, m.step")


@pytest.fixture(scope="module")
def store(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    (folder / "train.py").write_text(TRAIN)
    (folder / "spec.yaml").write_text(SPEC)
    paretolab.run(folder / "spec.yaml", store=folder / "results", workers=1)
    return str(folder / "results")


def out(capsys, *argv) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_csv_reads_with_the_csv_module_and_pandas(store, capsys):
    text = out(capsys, "query", SQL, "--format", "csv", "--store", store)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["lr"], r["step"]) for r in rows] == [("0.1", "0"), ("0.1", "1"), ("0.1", "2"),
                                                    ("10.0", "0"), ("10.0", "1"), ("10.0", "2")]
    assert json.loads(rows[1]["steps"]) == [1, 2]
    assert strict_json(rows[1]["point"]) == {"loss": 0.5, "lr": 0.1}
    assert strict_json(rows[3]["point"]) == {"loss": None, "lr": 10.0}  # NaN inside JSON text: null
    assert rows[3]["loss"] == "nan" and rows[0]["error"] == ""  # NaN, and NULL as an empty field
    assert rows[0]["text"] == 'a,b "c"'
    header, first = text.splitlines()[:2]
    assert header == "lr,step,loss,steps,point,error,word,text"  # quoted only where needed
    assert first.startswith("0.1,0,1.0,") and ",plain," in first and first.endswith(',"a,b ""c"""')

    frame = pd.read_csv(io.StringIO(text))
    assert frame["loss"].isna().tolist() == [False] * 3 + [True] * 3
    assert frame["loss"][:3].tolist() == [1.0, 0.5, 1 / 3]
    assert frame["word"].tolist() == ["plain"] * 6 and frame["error"].isna().all()


def test_a_list_column_as_csv(store, capsys):
    text = out(capsys, "query", "SELECT list(lr ORDER BY lr) AS lrs FROM trials", "--format", "csv", "--store", store)
    assert list(csv.reader(io.StringIO(text))) == [["lrs"], ["[0.1, 10.0]"]]


def test_json_is_strict_with_nan_as_null(store, capsys):
    rows = strict_json(out(capsys, "query", SQL, "--format", "json", "--store", store))
    assert len(rows) == 6
    assert rows[1]["loss"] == 0.5 and rows[1]["steps"] == [1, 2] and rows[1]["point"] == {"loss": 0.5, "lr": 0.1}
    assert rows[3]["loss"] is None and rows[3]["point"] == {"loss": None, "lr": 10.0}
    assert rows[0]["error"] is None and rows[0]["text"] == 'a,b "c"'
    inf = strict_json(out(capsys, "query", "SELECT 'inf'::DOUBLE AS x, ['-inf'::DOUBLE] AS y", "--format", "json",
                          "--store", store))
    assert inf == [{"x": None, "y": [None]}]


def test_describe_gives_every_column_a_type(store, capsys):
    for view in ("trials", "metrics", "sweeps"):
        rows = strict_json(out(capsys, "query", f"DESCRIBE {view}", "--format", "json", "--store", store))
        types = {r["column_name"]: r["column_type"] for r in rows}
        assert "NULL" not in types.values(), (view, types)
    trials = {r["column_name"]: r["column_type"] for r in strict_json(
        out(capsys, "query", "DESCRIBE trials", "--format", "json", "--store", store))}
    assert trials["error"] == "VARCHAR"  # no trial failed: every row NULL, typed as the column is


def test_the_analysis_commands_share_the_formats(store, capsys):
    rows = strict_json(out(capsys, "cells", "--sweep", "nan", "--format", "json", "--store", store))
    assert rows and all(not isinstance(v, float) or math.isfinite(v) for r in rows for v in r.values())
    text = out(capsys, "cells", "--sweep", "nan", "--format", "csv", "--store", store)
    assert len(pd.read_csv(io.StringIO(text))) == len(rows)

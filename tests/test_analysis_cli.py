"""Analysis commands end to end on a real (small) sparse-parity sweep, and the report in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import pytest

import paretolab

SPEC = """\
sweep: small
task: sparse_parity
task_args: {n: 12, k: 3}
model: mlp
grid:
  width: [16, 64]
  train_size: [null, 100, 400]
fixed: {lr: 0.1, batch_size: 32}
seeds: 3
max_steps: 1500
eval: {every: 50, test_size: 256}
success: {metric: test_error, op: "<=", value: 0.1}
"""
MAGIC = {".png": b"\x89PNG", ".svg": b"<?xml", ".pdf": b"%PDF"}


@pytest.fixture(scope="module")
def store(ray_cluster, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis")
    (folder / "small.yaml").write_text(SPEC)
    paretolab.run(folder / "small.yaml", store=folder / "r")
    return folder / "r"


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["paretolab", *args], capture_output=True, text=True, timeout=300)


def as_json(*args: str) -> list[dict]:
    out = cli(*args, "--format", "json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_tables(store):
    s = ["--sweep", "small", "--store", str(store)]
    cells = as_json("cells", *s)
    assert len(cells) == 6 and all(c["n_seeds"] == 3 and c["p_lo"] <= c["p_success"] <= c["p_hi"] for c in cells)
    front = as_json("frontier", *s, "--minimize", "train_size,steps_to_success", "--by", "width")
    assert front and all(f["on_frontier"] and f["p_success"] >= 0.5 for f in front)
    luck = as_json("luck", *s, "--by", "width")
    assert {r["k_seeds"] for r in luck} == {1, 2, 4, 8, 9}  # 9 seeds per width: powers of two, then all
    assert len(as_json("phases", *s, "--axis", "train_size", "--by", "width")) == 2
    trials = as_json("phases", *s, "--trials")
    assert len(trials) == 18 and any(t["onset_step"] for t in trials)
    fits = as_json("fit", *s, "--x", "train_size", "--n-boot", "50")
    assert len(fits) == 1 and fits[0]["n_trials"] == 12  # online trials have no train_size
    views = as_json("query", "SELECT (SELECT count(*) FROM cells) AS c, (SELECT count(*) FROM frontier) AS f, "
                             "(SELECT count(*) FROM transitions) AS t", *s)
    assert views == [{"c": 6, "f": views[0]["f"], "t": 18}] and views[0]["f"] >= 1


@pytest.mark.parametrize("kind, extra, suffix", [
    ("frontier", [], ".png"), ("phase", [], ".svg"), ("curves", [], ".pdf"), ("luck", [], ".png"),
    ("fit", ["--x", "train_size"], ".png"),
])
def test_plots(store, tmp_path, kind, extra, suffix):
    out = tmp_path / f"{kind}{suffix}"
    run = cli("plot", kind, "--sweep", "small", "--store", str(store), "-o", str(out), *extra)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes().startswith(MAGIC[suffix]) and out.stat().st_size > 5000


def test_bad_analysis_input_is_one_line(store):
    s = ["--sweep", "small", "--store", str(store)]
    for args, message in [(("frontier", *s, "--minimize", "nope"), "nope"),
                          (("phases", *s), "--axis"),
                          (("fit", *s, "--x", "width", "--by", "width"), "cannot also be"),
                          (("plot", "frontier", *s, "-o", "x.gif"), ".gif"),
                          (("cells", "--sweep", "nope", "--store", str(store)), "unknown sweep 'nope'"),
                          (("luck", *s, "--success", "test_error=<0.1"), "bad success criterion")]:
        out = cli(*args)
        assert out.returncode == 2 and message in out.stderr and len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)


def test_export(store, tmp_path):
    out = cli("export", "--sweep", "small", "--store", str(store), "-o", str(tmp_path / "e"))
    assert out.returncode == 0 and "trials.parquet: 18 rows" in out.stdout


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_report_in_a_headless_browser(store, tmp_path):
    page = tmp_path / "report.html"
    assert cli("report", "--sweep", "small", "--store", str(store), "-o", str(page)).returncode == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    with tempfile.TemporaryDirectory() as profile:
        run = subprocess.run([chromium(), *flags, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    body = run.stdout[run.stdout.index("<body"):].split(">", 1)[0]
    assert 'data-plots-total="5"' in body and 'data-plots-loaded="5"' in body  # every plot decoded
    assert "CONSOLE" not in run.stderr  # no console message, error or otherwise
    assert "Frontier" in run.stdout and "Phase diagram" in run.stdout and "width: [16, 64]" in run.stdout
    for part in ("Totals", "CPU core-seconds", "training FLOPs", "Versions", "Cells", "Power-law fit",
                 "Where P(success) first reaches 1/2 along train_size"):
        assert part in run.stdout, part
    assert f"<th>paretolab</th><td>{metadata.version('paretolab')}</td>" in run.stdout

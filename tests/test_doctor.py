"""Corrupt files in a store (as a full disk or a crash leaves them): queries skip them with a warning,
`paretolab doctor` moves them aside, and a rerun of the sweep runs exactly the trials whose rows were lost."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import paretolab
from paretolab.store.files import StoreWarning
from paretolab.cli import main


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def flip_bytes(path: Path) -> None:
    """Corrupt a data page and leave the footer intact: only a full read notices."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def ids_in(path: Path) -> set[str]:
    return set(pq.read_table(path, columns=["trial_id"]).column(0).to_pylist())


@pytest.fixture
def swept(ray_cluster, tmp_path, write_spec):
    """A store written by three runs of a growing sweep (so each table has several files), and its spec."""
    for widths in ("[16]", "[16, 32]", "[16, 32, 64]"):
        spec = write_spec(tmp_path, name="doc", widths=widths, seeds=2, max_steps=200, every=50)
        paretolab.run(spec, store=tmp_path / "r", workers=2)
    return tmp_path / "r", spec


def test_queries_skip_bad_files_doctor_moves_them_and_a_rerun_redoes_exactly_the_lost_trials(swept, capsys):
    root, spec = swept
    trials_files = sorted((root / "trials").glob("*.parquet"))
    metrics_files = sorted((root / "metrics").glob("*.parquet"))
    assert len(trials_files) >= 3 and len(metrics_files) >= 3
    bad_trials, bad_metrics = trials_files[0], metrics_files[1:3]
    lost_results = ids_in(bad_trials)
    rows_left = {}
    for f in metrics_files:
        for trial_id in ids_in(f):
            rows_left.setdefault(trial_id, []).append(f not in bad_metrics)
    lost_curves = {t for t, kept in rows_left.items() if not any(kept)}
    cut_curves = {t for t, kept in rows_left.items() if not all(kept)}  # a curve with a row lost is cut short
    truncate(bad_trials)
    truncate(bad_metrics[0])
    flip_bytes(bad_metrics[1])

    # every query works meanwhile, and warns once per bad file, naming it and the fix, on one line
    query = subprocess.run(["paretolab", "query", "SELECT count(*) AS n FROM trials", "--store", str(root),
                            "--format", "json"], capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == [{"n": 6 - len(lost_results)}]
    warned = query.stderr.splitlines()
    assert any(str(bad_trials) in w and "paretolab doctor --store" in w for w in warned)
    assert all(w.startswith("warning: skipping unreadable file") for w in warned)
    with pytest.warns(StoreWarning, match="skipping unreadable file"):  # the corrupt page: found by a full read
        assert main(["query", "SELECT count(DISTINCT trial_id) AS n FROM metrics m WHERE length(m::VARCHAR) > 0",
                     "--store", str(root), "--format", "json"]) == 0  # every column read
    assert json.loads(capsys.readouterr().out) == [{"n": 6 - len(lost_curves)}]
    assert main(["status", "--store", str(root)]) == 0 and "doc" in capsys.readouterr().out
    assert main(["cells", "--sweep", "doc", "--store", str(root), "--format", "json"]) == 0
    capsys.readouterr()

    assert main(["doctor", "--check", "--store", str(root)]) == 1
    report = capsys.readouterr().out
    assert all(f"{f}: unreadable" in report for f in (bad_trials, *bad_metrics)) and "to move to" in report
    assert bad_trials.exists()  # --check moves nothing

    assert main(["doctor", "--store", str(root)]) == 0
    assert capsys.readouterr().out.count("moved to _quarantine/") == 3
    assert sorted(p.name for p in (root / "_quarantine" / "metrics").iterdir()) == sorted(f.name for f in bad_metrics)
    assert (root / "_quarantine" / "trials" / bad_trials.name).exists()
    assert main(["doctor", "--store", str(root)]) == 0  # no file left to move; the cut curves are reported
    cut_short = cut_curves - lost_results
    assert f"{len(cut_short)} trial(s) recorded as ended have curves cut short" in capsys.readouterr().out

    store = paretolab.open_store(root)
    before = store.query("SELECT max(finished_at) FROM trials_all").column(0)[0].as_py()
    rerun = paretolab.run(spec, store=root, workers=2)
    again = set(store.query("SELECT trial_id FROM trials_all WHERE finished_at > ?", [before]).column(0).to_pylist())
    assert lost_results | lost_curves and again == lost_results | cut_curves and rerun.ran == len(again)
    assert store.query("SELECT count(*) FROM trials").column(0)[0].as_py() == 6
    assert main(["doctor", "--store", str(root)]) == 0 and "nothing to do" in capsys.readouterr().out


def test_doctor_moves_leftovers_and_fixes_the_manifest(tmp_path, make_store, capsys):
    root = make_store(tmp_path / "r", "s", ["width"], [{"trial_id": "a", "width": 8}],
                      [{"trial_id": "a", "step": 0, "samples": 0, "test_error": 0.5}])
    (root / "trials" / ".0001-x.parquet.tmp").write_bytes(b"PAR1 half a file")
    leftover = sorted((root / "metrics").glob("*.parquet"))[0]
    merged = root / "metrics" / "99999999999999999999-merged.parquet"
    merged.write_bytes(leftover.read_bytes())  # a compaction that stopped before deleting what it merged
    (root / "metrics" / "_compactions.json").write_text(json.dumps(
        {merged.name: [leftover.name], "00000000000000000001-never.parquet": ["gone.parquet"]}))
    store = paretolab.open_store(root)
    assert store.query("SELECT count(*) FROM metrics").column(0)[0].as_py() == 1  # the leftover is hidden

    assert main(["doctor", "--store", str(root)]) == 0
    out = capsys.readouterr().out
    assert "temporary file left by a run" in out and f"replaced by {merged.name}" in out
    assert "names the merged file 00000000000000000001-never.parquet, which does not exist: dropped" in out
    assert (root / "_quarantine" / "trials" / ".0001-x.parquet.tmp").exists()
    assert json.loads((root / "metrics" / "_compactions.json").read_text()) == {merged.name: [leftover.name]}
    assert store.query("SELECT count(*) FROM metrics").column(0)[0].as_py() == 1  # same answer after repair


def test_doctor_refuses_while_a_run_writes(tmp_path, make_store, capsys):
    root = make_store(tmp_path / "r", "s", ["width"], [{"trial_id": "a", "width": 8}])
    with paretolab.open_store(root).lock():
        assert main(["doctor", "--store", str(root)]) == 2
    assert "is being written by another paretolab run" in capsys.readouterr().err
    assert main(["doctor", "--store", str(tmp_path / "nowhere")]) == 2
    assert "no result store at" in capsys.readouterr().err


def test_results_without_curves_count_as_ended_until_doctor_moved_a_curve_file(tmp_path, make_store):
    root = make_store(tmp_path / "r", "s", ["width"], [{"trial_id": "a", "width": 8}, {"trial_id": "b", "width": 16}],
                      [{"trial_id": "a", "step": 0, "samples": 0, "test_error": 0.5}])
    store = paretolab.open_store(root)
    assert store.ended() == {"a", "b"}  # b has no curve: a store written by other means may be so
    (root / "_quarantine" / "metrics").mkdir(parents=True)
    (root / "_quarantine" / "metrics" / "00000000000000000001-lost.parquet").write_bytes(b"PAR1")
    assert store.ended() == {"a"}  # once a curve file is known lost, b runs again

"""The memo of the curves (`analysis.curve_memo`) that `paretolab serve` reads in place of scanning
every metric row: it must price trials and count running ones exactly as the curves do, and a new
snapshot of the store must summarize its new files only."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from support import make_store

from paretolab.analysis import curve_memo
from paretolab.analysis.cells import cells, costs_sql, open_sweep, successes_table, trial_costs
from paretolab.analysis.luck import luck
from paretolab.analysis.status import status
from paretolab.serve.shared import SharedSnapshots
from paretolab.store import Store, StoreWriter
from paretolab.vocabulary.success import Success

NOW = datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)


def awkward_store(root):
    """Two sweeps with different criteria; a trial re-run whose first attempt succeeded early (its
    second attempt's curve counts); NaN and inf values that meet no criterion; a running trial (a
    curve, no result); a diverged one; a failed one; and a metrics file without `samples`."""
    trials, metrics = [], []
    for i in range(6):
        tid = f"a{i}"
        trials.append({"trial_id": tid, "width": 16 * (1 + i % 2), "seed": i // 2, "success": i % 3 != 0})
        for step in range(0, 500, 100):
            err = 0.5 if i % 3 == 0 else max(0.02, 0.5 - step / 400 * (1 + i / 10))
            metrics.append({"trial_id": tid, "step": step, "samples": step * 32, "test_error": err, "test_loss": 4 * err})
    trials.append({"trial_id": "nan", "width": 16, "seed": 9, "status": "diverged", "success": False})
    metrics += [{"trial_id": "nan", "step": s, "samples": s * 32, "test_error": v, "test_loss": v}
                for s, v in ((0, 0.5), (100, math.nan), (200, math.inf), (300, -math.inf))]
    trials.append({"trial_id": "boom", "width": 32, "seed": 9, "status": "failed", "success": False, "error": "boom"})
    root = make_store(root, "one", ["width"], trials, metrics)
    # the re-run: attempt 1 met the criterion at step 100, attempt 2 (the result's) only at step 300
    writer = StoreWriter(Store(root))
    writer.append("metrics", [{"trial_id": "a1", "attempt": 1, "step": 100, "samples": 3200, "test_error": 0.0}])
    writer.append("metrics", [{"trial_id": "a1", "attempt": 2, "step": s, "samples": s * 32, "test_error": e}
                              for s, e in ((0, 0.5), (100, 0.4), (300, 0.05))])
    # a2's second attempt is still running: its result, and the curve that counts, are attempt 1's
    writer.append("metrics", [{"trial_id": "a2", "attempt": 2, "step": 0, "samples": 0, "test_error": 0.0}])
    writer.append("trials", [{"trial_id": "a1", "attempt": 2, "status": "finished", "width": 32, "seed": 0,
                              "success": True, "n_params": 100, "finished_at": NOW}])
    writer.flush()
    # a running trial's rows, in a file of its own with no samples column
    writer.append("metrics", [{"trial_id": "run", "attempt": 1, "step": s, "test_error": 0.01} for s in (0, 100)])
    writer.flush()
    make_store(root, "two", ["width"], [{"trial_id": f"b{w}", "width": w, "seed": 0, "success": True} for w in (16, 64)],
               [{"trial_id": f"b{w}", "step": s, "samples": s * 8, "test_loss": 1.0 - s / 1000 * w / 16}
                for w in (16, 64) for s in (0, 100, 200, 300)], success=("test_loss", "<=", 0.9))
    return Store(root)


def same(a, b) -> bool:
    key = [(c, "ascending") for c in a.column_names if c in ("trial_id", "width", "k_seeds")]
    return a.sort_by(key).equals(b.sort_by(key))


def test_the_memo_prices_and_counts_as_the_curves_do(tmp_path):
    plain = awkward_store(tmp_path / "s")
    shared = SharedSnapshots(plain)
    for sweep in ("one", "two", "one,two"):
        if sweep != "one,two":
            assert same(trial_costs(shared, sweep), trial_costs(plain, sweep)), sweep
        assert same(cells(shared, sweep, success="test_loss<=0.9"), cells(plain, sweep, success="test_loss<=0.9"))
    assert same(cells(shared, "one"), cells(plain, "one"))
    assert same(luck(shared, "one", axes=["width"]), luck(plain, "one", axes=["width"]))
    assert status(shared, now=NOW) == status(plain, now=NOW)
    assert [s.started for s in status(shared, now=NOW)] == [0, 0]  # `run` is in no sweep's list
    # the memo is read, not the curves: the re-run's first success is its second attempt's
    costs = {r["trial_id"]: r["steps_to_success"] for r in trial_costs(shared, "one").to_pylist()}
    assert costs["a1"] == 300 and costs["a2"] not in (0, None) and costs["nan"] is None and costs["a0"] is None and "boom" not in costs
    with open_sweep(shared, "one") as (con, _, criterion):
        assert f"main.{successes_table(criterion)}" in costs_sql(con, criterion)
    with open_sweep(plain, "one") as (con, _, criterion):
        assert "main._successes" not in costs_sql(con, criterion)


def test_a_new_snapshot_summarizes_its_new_files_only(tmp_path, monkeypatch):
    plain = awkward_store(tmp_path / "s")
    shared = SharedSnapshots(plain)
    seen = []
    read_files = curve_memo.read_files
    monkeypatch.setattr(curve_memo, "read_files", lambda con, paths, *a: seen.extend(paths) or read_files(con, paths, *a))
    cells(shared, "one")
    first = len(seen)
    assert first == len(plain.files("metrics"))
    writer = StoreWriter(plain)
    writer.append("metrics", [{"trial_id": "a0", "attempt": 1, "step": 600, "samples": 600 * 32, "test_error": 0.01}])
    writer.flush()
    assert same(cells(shared, "one"), cells(plain, "one"))  # a0 succeeds now, at step 600
    assert {r["trial_id"]: r["steps_to_success"] for r in trial_costs(shared, "one").to_pylist()}["a0"] == 600
    assert len(seen) == first + 1  # the new file only
    # a compaction replaces every file by one: that one is summarized, and the answers stay the same
    before = cells(plain, "one")
    plain.compact("metrics")
    assert same(cells(shared, "one"), before)
    assert len(seen) == first + 2


def test_criteria_of_every_sweep_are_memoized(tmp_path):
    shared = SharedSnapshots(awkward_store(tmp_path / "s"))
    with shared.connect("two") as con:
        for c in (Success("test_error", "<=", 0.1), Success("test_loss", "<=", 0.9)):
            assert con.execute(f"SELECT count(*) FROM main.{successes_table(c)}").fetchall()[0][0] > 0


def test_the_pool_is_fewer_trials_where_curves_are_long(tmp_path, monkeypatch):
    """The pool of curves keeps about `POOL_ROWS` rows: halved while longer curves would overflow
    it, never below `POOL_LEAST` trials; the bands drawn from it match those drawn from every curve
    when the pool holds every trial."""
    from paretolab.serve import data

    plain = awkward_store(tmp_path / "s")
    with plain.connect() as con:
        assert curve_memo.pool_ids(con).num_rows == 10  # every trial of both sweeps (`run` is in neither)
        rows = con.execute("SELECT count(*) FROM metrics_all").fetchall()[0][0]
        monkeypatch.setattr(curve_memo, "POOL_LEAST", 2)
        monkeypatch.setattr(curve_memo, "POOL_SIZE", 8)
        monkeypatch.setattr(curve_memo, "POOL_ROWS", rows * 0.3)  # 10 trials: 8 or 4 per sweep overflow it, 2 fit
        assert len(curve_memo.pool_ids(con)) == 4
        monkeypatch.setattr(curve_memo, "POOL_ROWS", rows * 0.01)  # nothing fits: the least
        assert len(curve_memo.pool_ids(con)) == 4
        monkeypatch.setattr(curve_memo, "POOL_ROWS", rows * 10.0)
        assert len(curve_memo.pool_ids(con)) == 10
    monkeypatch.undo()
    shared = SharedSnapshots(plain)
    for by in ("width", None):
        assert data.curve_bands(shared, "one", by=by) == data.curve_bands(plain, "one", by=by)
    assert data.transitions_summary(shared, "one", "width") == data.transitions_summary(plain, "one", "width")


def test_a_compaction_while_the_memo_reads_is_a_new_snapshot(tmp_path, monkeypatch):
    """The files the memo was about to read are merged away under it (another process compacting):
    it reads the new snapshot instead, and answers as the curves do."""
    plain = awkward_store(tmp_path / "s")
    shared = SharedSnapshots(plain)
    read_files, compacted = curve_memo.read_files, []

    def compact_first(con, paths, *a):
        if not compacted:
            compacted.append(plain.compact("metrics"))
        return read_files(con, paths, *a)

    monkeypatch.setattr(curve_memo, "read_files", compact_first)
    assert same(cells(shared, "one"), cells(plain, "one"))
    assert compacted[0] > 1 and len(plain.files("metrics")) == 1  # several files were merged into one under it

"""End-to-end runs on a real local Ray: resume, extension, failures, worker loss, store round trip."""

from __future__ import annotations

import os
import signal

import duckdb
import pyarrow.parquet as pq
import pytest

import paretolab
from paretolab.orchestrator.events import Observer


def trial_count(store, where="true"):
    return store.query(f"SELECT count(*) AS n FROM trials WHERE {where}").column("n")[0].as_py()


def test_run_resume_and_extend(ray_cluster, tmp_path, write_spec):
    spec = write_spec(tmp_path, widths="[16, 32]", seeds=2)
    first = paretolab.run(spec, store=tmp_path / "r")
    assert (first.total, first.ran, first.already_done) == (4, 4, 0)
    store = paretolab.open_store(tmp_path / "r")
    assert trial_count(store) == 4
    files = store.files("trials")

    again = paretolab.run(spec, store=tmp_path / "r")
    assert (again.ran, again.already_done) == (0, 4)
    assert store.files("trials") == files  # nothing was written

    more = write_spec(tmp_path, widths="[16, 32, 64]", seeds=3)
    extended = paretolab.run(more, store=tmp_path / "r")
    assert (extended.total, extended.ran, extended.already_done) == (9, 5, 4)
    assert trial_count(store) == 9
    assert store.query("SELECT count(*) FROM trials_all").column(0)[0].as_py() == 9  # no trial ran twice


def test_sweeps_share_trials(ray_cluster, tmp_path, write_spec):
    paretolab.run(write_spec(tmp_path, name="a", widths="[16, 32]", seeds=1), store=tmp_path / "r")
    b = paretolab.run(write_spec(tmp_path, name="b", widths="[32, 64]", seeds=1), store=tmp_path / "r")
    assert (b.ran, b.already_done) == (1, 1)
    store = paretolab.open_store(tmp_path / "r")
    shared = store.query("SELECT trial_id FROM sweep_trials GROUP BY trial_id HAVING count(*) = 2")
    assert shared.num_rows == 1
    assert trial_count(store) == 3
    assert store.query("SELECT count(*) FROM trials", sweep="b").column(0)[0].as_py() == 2


def test_metrics_stream_and_success(ray_cluster, tmp_path, write_spec):
    spec = write_spec(tmp_path, widths="[64]", seeds=1, max_steps=4000, every=50)
    paretolab.run(spec, store=tmp_path / "r")
    store = paretolab.open_store(tmp_path / "r")
    t = store.query("SELECT * FROM trials").to_pylist()[0]
    assert t["status"] == "finished" and t["success"]
    assert t["steps"] == t["steps_to_success"] < 4000  # stopped at the first evaluation that succeeded
    assert t["flops_to_success"] == 6 * t["n_params"] * t["samples_to_success"]
    curve = store.query("SELECT step, test_error FROM metrics ORDER BY step").to_pylist()
    assert [r["step"] for r in curve] == list(range(0, t["steps"] + 1, 50))
    assert curve[-1]["test_error"] <= 0.1 < curve[0]["test_error"]
    # its final metrics say they are final, and that stop-on-success ended the trial (first success)
    assert t["stopped_at_success"] is True and t["final_test_error"] == curve[-1]["test_error"]
    finals = {k for k in t if k.startswith("final_")}
    assert {"final_train_loss", "final_train_error", "final_test_loss", "final_test_error", "final_test_acc"} <= finals
    assert not {k.removeprefix("final_") for k in finals} & set(t)
    budget = write_spec(tmp_path, name="budget", widths="[64]", seeds=1, max_steps=100, every=50, target=-1.0)
    paretolab.run(budget, store=tmp_path / "r")
    ran = store.query("SELECT status, success, steps, stopped_at_success, final_test_error FROM trials",
                      sweep="budget").to_pylist()[0]
    assert (ran["status"], ran["success"], ran["steps"], ran["stopped_at_success"]) == ("finished", False, 100, False)
    last = store.query("SELECT test_error FROM metrics WHERE step = 100", sweep="budget").to_pylist()
    assert [ran["final_test_error"]] == [r["test_error"] for r in last]  # its values at max_steps


def test_raising_trial_is_recorded_failed_and_not_rerun(ray_cluster, tmp_path, write_spec):
    spec = write_spec(tmp_path, task="exploding", widths="[16]", seeds=2)
    summary = paretolab.run(spec, store=tmp_path / "r")
    assert summary.failed == 2
    store = paretolab.open_store(tmp_path / "r")
    rows = store.query("SELECT status, attempt, error FROM trials").to_pylist()
    assert all(r["status"] == "failed" and r["attempt"] == 1 and "boom at batch 4" in r["error"] for r in rows)
    assert paretolab.run(spec, store=tmp_path / "r").ran == 0
    retried = paretolab.run(spec, store=tmp_path / "r", retry_failed=True)
    assert retried.ran == 2
    assert store.query("SELECT max(attempt) FROM trials").column(0)[0].as_py() == 2


class KillOnce(Observer):
    """Kills the worker process (SIGKILL) the first time it reports a row of attempt 1 of a trial."""

    def __init__(self, every_attempt: bool = False):
        self.killed: list[tuple[str, int]] = []
        self.every_attempt = every_attempt

    def on_report(self, report):
        ended = {r.trial_id for r in report.results}
        for row in report.rows:
            key = (row.trial_id, row.attempt)
            mid_trial = row.step > 0 and row.trial_id not in ended
            if mid_trial and key not in self.killed and (self.every_attempt or not self.killed):
                self.killed.append(key)
                os.kill(report.pid, signal.SIGKILL)
                return


def test_worker_killed_mid_trial_is_rerun(ray_cluster, tmp_path, write_spec):
    # target -1 is never reached, so the trial runs all its steps (seconds) and reports mid-way (every 1 s)
    spec = write_spec(tmp_path, widths="[64]", seeds=1, max_steps=10000, every=100, target=-1)
    killer = KillOnce()
    summary = paretolab.run(spec, store=tmp_path / "r", workers=1, observer=killer)
    assert len(killer.killed) == 1 and summary.ran == 1 and summary.failed == 0
    store = paretolab.open_store(tmp_path / "r")
    row = store.query("SELECT status, attempt, steps FROM trials").to_pylist()[0]
    assert row == {"status": "finished", "attempt": 2, "steps": 10000}
    view = store.query("SELECT DISTINCT attempt FROM metrics").column(0).to_pylist()
    assert view == [2]  # the curve shown is the attempt that finished
    steps = store.query("SELECT step FROM metrics ORDER BY step").column(0).to_pylist()
    assert steps == list(range(0, 10001, 100))  # no row lost or duplicated
    assert 1 in store.query("SELECT DISTINCT attempt FROM metrics_all").column(0).to_pylist()


def test_worker_killed_every_attempt_gives_up(ray_cluster, tmp_path, write_spec):
    spec = write_spec(tmp_path, widths="[64]", seeds=1, max_steps=20000, every=100, target=-1,
                      extra="max_attempts: 2\n")
    summary = paretolab.run(spec, store=tmp_path / "r", workers=1, observer=KillOnce(every_attempt=True))
    assert summary.failed == 1
    row = paretolab.open_store(tmp_path / "r").query("SELECT status, attempt, error FROM trials").to_pylist()[0]
    assert row["status"] == "failed" and row["attempt"] == 2 and "gave up after 2 attempts" in row["error"]


def test_same_trial_same_curve(ray_cluster, tmp_path, write_spec):
    spec = write_spec(tmp_path, widths="[32]", seeds=1, max_steps=200, every=20, target=-1)
    curves = []
    for store in ("a", "b"):
        paretolab.run(spec, store=tmp_path / store)
        curves.append(paretolab.open_store(tmp_path / store).query(
            "SELECT step, train_loss, test_loss, test_error FROM metrics ORDER BY step").to_pylist())
    assert curves[0] == curves[1]


def test_store_reads_the_same_in_pyarrow_and_duckdb(ray_cluster, tmp_path, write_spec):
    paretolab.run(write_spec(tmp_path, widths="[16, 32]", seeds=2), store=tmp_path / "r")
    for table in ("trials", "metrics"):
        by_arrow = pq.read_table(tmp_path / "r" / table).to_pylist()
        by_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path / 'r' / table}/*.parquet', union_by_name=true)").to_arrow_table().to_pylist()
        key = lambda r: (r["trial_id"], r["attempt"], r.get("step", 0))  # noqa: E731
        assert sorted(by_arrow, key=key) == sorted(by_duckdb, key=key)
        assert len(by_arrow) > 0


def test_lock_refuses_a_second_writer(tmp_path):
    from paretolab.errors import StoreError

    store = paretolab.open_store(tmp_path / "r")
    with store.lock():
        with pytest.raises(StoreError, match="being written by another paretolab run"):
            with paretolab.open_store(tmp_path / "r").lock():
                pass
    with store.lock():  # released on exit
        pass

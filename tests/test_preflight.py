"""Checks before a run starts, and progress that tells the truth.

A worker that no node can hold is refused with one line naming what is missing and what is there
(the refusals through the CLI: rows of tests/test_bad_input.py); a dry run, which starts no Ray,
checks this machine and warns. Rates are ended trials over elapsed time, so that a pack of trials
ending at one instant does not read as thousands of trials per second.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from paretolab.analysis.status import RATE_WINDOW_S, status, status_table
from paretolab.cli import main
from paretolab.clusters.connect import missing, this_machine
from paretolab.orchestrator.events import Counts
from paretolab.progress import eta, line, rate

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("cpu, gpu, nodes, message", [
    (1, 0, [(2, 0)], None),
    (1, 1, [(2, 0)], "resources: a worker needs 1 GPU; the cluster has none (CPUs: 2)"),
    (1, 0.5, [(2, 0), (4, 0)], "resources: a worker needs 0.5 GPU; the cluster has none (CPUs: 6)"),
    (4, 0, [(2, 0)], "resources: a worker needs 4 CPUs; the cluster has 2"),
    # the total is enough, no node is: Ray places a worker on one node
    (4, 0, [(2, 0), (2, 0)], "resources: a worker needs 4 CPUs on one node; the largest node of the cluster has 2 "
                             "(2 nodes, 4 CPUs in all)"),
    (1, 2, [(8, 1), (8, 1)], "resources: a worker needs 2 GPUs; the most one node of the cluster has is 1"),
    (4, 1, [(8, 0), (2, 1)], "resources: a worker needs 4 CPUs and 1 GPU on one node; no node of the cluster has "
                             "both (8 CPUs, 0 GPUs; 2 CPUs, 1 GPU)"),
    (4, 1, [(8, 0), (4, 1)], None),
])
def test_missing_names_what_a_worker_needs_and_what_is_there(cpu, gpu, nodes, message):
    assert missing(cpu, gpu, nodes) == message


def test_this_machine_counts_cpus_and_gpus_without_torch():
    import os

    ((cpus, gpus),) = this_machine()
    assert cpus == len(os.sched_getaffinity(0)) and gpus >= 0


def test_a_dry_run_warns_of_a_worker_this_machine_cannot_hold(tmp_path, write_spec, capsys, monkeypatch):
    """A spec may be meant for a cluster: its dry run here says what would stop `run` (a warning
    line on stderr) and still shows the trials (exit 0); `run` itself refuses (tests/test_bad_input.py)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    spec = write_spec(tmp_path, name="big", widths="[16]", seeds=1)
    cpus = int(this_machine()[0][0])
    spec.write_text(spec.read_text() + f"resources: {{cpu: {cpus + 1}}}\n")
    assert main(["run", str(spec), "--store", str(tmp_path / "r"), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert out.err == (f"warning: resources: a worker needs {cpus + 1} CPUs; this machine has {cpus}; `paretolab run` "
                       "on this machine would stop here (give --address to run it on a cluster)\n")
    assert "big: 1 trials, 0 already in" in out.out and not (tmp_path / "r").exists()

    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # a cluster: checked when `run` joins it, not here
    assert main(["run", str(spec), "--store", str(tmp_path / "r"), "--dry-run"]) == 0
    assert capsys.readouterr().err == ""


def test_the_progress_rate_counts_a_pack_over_the_time_it_took():
    counts = Counts(total=512, started_at=100.0)
    assert (rate(counts, now=110.0), eta(counts, now=110.0)) == (0.0, "?")
    counts.done = 256  # a pack of 256 ended at once, 10 s into the run
    assert rate(counts, now=110.0) == 25.6 and eta(counts, now=110.0) == "10 s"
    assert line(Counts(total=1)).endswith("0.0 trials/s, eta ?")  # a run with no trial ended yet


def test_status_rate_and_eta_of_packed_trials_and_of_a_sweep_not_running(tmp_path, make_store):
    """Six trials of one pack end at the same instant after 30 s of training: 6 trials / 30 s (the
    rate between finish instants was thousands per second); long after, the sweep is not running
    and has no rate and no ETA."""
    end = T0 + timedelta(seconds=30)
    trials = [{"trial_id": f"t{i}", "width": 16, "finished_at": end, "wall_s": 30.0, "success": True} for i in range(6)]
    store = make_store(tmp_path / "r", "packed", ["width"], trials)
    from paretolab.store import Store

    st = Store(store)
    (s,) = status(st, "packed", now=end)
    assert s.rate_per_s == pytest.approx(6 / 30) and s.eta_s == 0  # all ended: nothing left
    (s,) = status(st, "packed", now=end + timedelta(seconds=RATE_WINDOW_S + 1))
    assert s.rate_per_s is None and s.eta_s is None
    (row,) = status_table(st, "packed", now=end).to_pylist()  # the same as a table, for frames
    assert row == {"sweep": "packed", "total": 6, "ended": 6, "succeeded": 6, "failed": 0, "diverged": 0, "pruned": 0,
                   "started": 0, "remaining": 0, "rate_per_s": pytest.approx(6 / 30), "eta_s": 0.0}


def test_status_of_a_store_whose_trials_lack_columns_a_run_writes(tmp_path, make_store):
    """A store written by another tool (or by hand) without `wall_s` or `success`: counts, no rate."""
    from paretolab.store import Store

    store = Store(make_store(tmp_path / "r", "bare", ["width"], [{"trial_id": "t1", "width": 16}]))
    assert "wall_s" not in store.query("SELECT * FROM trials LIMIT 0").column_names
    (s,) = status(store, "bare")
    assert (s.total, s.ended, s.succeeded, s.rate_per_s, s.eta_s) == (1, 1, 0, None, None)

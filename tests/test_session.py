"""The warm session: Ray and idle workers kept between `paretolab.run` calls in one process, the
workers replaced when the next run's do not match, none kept from an interrupted run, and the
process's Ctrl-C handler as it was after a run."""

from __future__ import annotations

import signal
from dataclasses import replace

import pytest
import ray

import paretolab
from paretolab.orchestrator import session as sessions
from paretolab.orchestrator.events import Interrupted, Observer
from paretolab.vocabulary.sweep import Resources
from paretolab.vocabulary.trial import Code

pytestmark = pytest.mark.slow


def keys(name: str, seeds: int = 4, cpu: float = 1, seed_from: int = 0) -> dict:
    return dict(sweep=name, task="sparse_parity", task_args={"n": 12, "k": 2}, model="mlp",
                model_args={"width": 16}, fixed={"batch_size": 16, "lr": 0.1},
                seeds=list(range(seed_from, seed_from + seeds)), max_steps=40, eval={"every": 20, "test_size": 64},
                resources={"cpu": cpu, "pack_size": 1})


class Pids(Observer):
    """The worker processes that sent reports."""

    def __init__(self):
        self.pids: set[int] = set()

    def on_report(self, report) -> None:
        self.pids.add(report.pid)


def run(spec: dict, store, **kw) -> set[int]:
    seen = Pids()
    summary = paretolab.run(spec, store=store, observer=seen, **kw)
    assert summary.mode == "ran" and summary.failed == 0, summary
    return seen.pids


def test_a_second_run_in_a_session_trains_on_the_first_runs_workers(tmp_path):
    up_before = ray.is_initialized()  # (the suite's shared Ray may be up: a session never stops it)
    with paretolab.session() as s:
        first = run(keys("a"), tmp_path / "r")
        assert ray.is_initialized() and len(s.idle) >= 1
        second = run(keys("b", seed_from=10), tmp_path / "r")
        assert second and second <= first
    assert ray.is_initialized() == up_before
    assert s.idle == []


def test_run_keeps_the_process_warm_until_shutdown(tmp_path):
    up_before = ray.is_initialized()
    first = run(keys("a"), tmp_path / "r")
    second = run(keys("b", seed_from=10), tmp_path / "r")
    assert second <= first and ray.is_initialized()
    paretolab.shutdown()
    assert ray.is_initialized() == up_before
    third = run(keys("c", seed_from=20), tmp_path / "r")  # starts again after a shutdown
    assert third and not third & first


def test_workers_of_other_resources_are_replaced(tmp_path):
    with paretolab.session() as s:
        first = run(keys("a", cpu=1), tmp_path / "r", workers=1)
        # a 2-CPU worker: the idle 1-CPU one is stopped first (on a 2-CPU node it would not fit beside it)
        second = run(keys("b", cpu=2, seed_from=10), tmp_path / "r", workers=1)
        assert second and not second & first
        assert [k for k, _ in s.idle] == [sessions.worker_key(Resources(cpu=2, pack_size=1), 1.0, {}, None)]


def test_runs_outside_a_session_keep_nothing(tmp_path):
    up_before = ray.is_initialized()
    run(keys("a"), tmp_path / "r", warm=False)
    assert ray.is_initialized() == up_before
    assert sessions._process is None or sessions._process.idle == []


class StopAtFirstReport(Observer):
    """A Ctrl-C as the scheduler's loop sees it: a KeyboardInterrupt while it takes a worker's report."""

    def __init__(self):
        self.stopped = False

    def on_report(self, report) -> None:
        if not self.stopped:
            self.stopped = True
            raise KeyboardInterrupt


def test_an_interrupted_run_keeps_no_worker_and_restores_the_ctrl_c_handler(tmp_path):
    def mine(*_):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGINT, mine)
    try:
        with paretolab.session() as s:
            first = run(keys("a"), tmp_path / "r")
            with pytest.raises(Interrupted):
                paretolab.run(keys("b", seeds=40, seed_from=10), store=tmp_path / "r", observer=StopAtFirstReport())
            assert s.idle == []  # its workers may have been winding a trial down: stopped, not kept
            assert signal.getsignal(signal.SIGINT) is mine
            again = run(keys("b", seeds=40, seed_from=10), tmp_path / "r")  # resumes on new workers
            assert again and not again & first
    finally:
        signal.signal(signal.SIGINT, before)


def test_workers_are_alike_only_with_the_same_code():
    code = Code(kind="function", name="train.py:main", root="/p", digest="d1")
    r = Resources(cpu=1)
    key = sessions.worker_key(r, 1.0, {}, code)
    assert key == sessions.worker_key(r, 1.0, {}, replace(code))
    assert key != sessions.worker_key(r, 1.0, {}, replace(code, digest="d2"))  # edited code: new workers
    assert key != sessions.worker_key(r, 1.0, {}, None)
    assert key != sessions.worker_key(Resources(cpu=2), 1.0, {}, code)
    assert key != sessions.worker_key(r, 1.0, {"runtime_env": {"working_dir": "gcs://x.zip"}}, code)

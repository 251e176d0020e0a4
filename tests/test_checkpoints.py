"""Checkpoints of the researcher's code, without Ray: written whole or not at all, a damaged one
refused with one line, the curve kept with it, on a local disk and on an object store (S3)."""

from __future__ import annotations

import dataclasses

import pytest

from paretolab.vocabulary.success import Success
from paretolab.workers.outcome import Outcome
from paretolab.vocabulary.trial import Assignment, Code, TrialConfig
from paretolab.workers.checkpoints import (CHECKPOINT_FILE, CheckpointError, checkpoint_folder, drop_checkpoint,
                                          load_checkpoint, save_checkpoint)
from paretolab.workers.user_code import Context


def code(where: str) -> Code:
    return Code(kind="function", name="train.py:main", root="/nowhere", checkpoints=where)


def trial(where: str, attempt: int = 1) -> Assignment:
    t = TrialConfig("0123456789abcdef", None, None, None, None, None, 7, None, None,
                    Success("loss", "<=", 0.1), code(where), (("lr", 0.1),))
    return Assignment(t, attempt)


def test_a_checkpoint_round_trips_and_is_replaced_whole(tmp_path):
    c = code(str(tmp_path / "ckpt"))
    assert load_checkpoint(c, "t1") is None  # none saved: None, not an error
    save_checkpoint(c, "t1", {"step": 1})
    save_checkpoint(c, "t1", {"step": 2})
    assert load_checkpoint(c, "t1") == {"step": 2}
    folder = tmp_path / "ckpt" / "t1"
    assert sorted(p.name for p in folder.iterdir()) == [CHECKPOINT_FILE]  # no temporary left behind
    drop_checkpoint(c, "t1")
    assert not folder.exists() and load_checkpoint(c, "t1") is None


def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path):
    c = code(str(tmp_path))
    save_checkpoint(c, "t1", {"weights": list(range(1000))})
    path = tmp_path / "t1" / CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(c, "t1")
    assert "damaged" in str(e.value) and "\n" not in str(e.value)
    path.write_bytes(b"")  # torn to nothing
    with pytest.raises(CheckpointError, match="damaged"):
        load_checkpoint(c, "t1")


def test_an_object_that_does_not_pickle_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot be pickled"):
        save_checkpoint(code(str(tmp_path)), "t1", {"f": lambda: 0})


def test_a_resumed_attempt_continues_the_curve(tmp_path):
    first = Context(trial(str(tmp_path)), "cpu")
    assert first.load_checkpoint() is None
    for step in (0, 10, 20):
        first.report(step=step, samples=step * 4, loss=1.0 - step / 100)
        first.save_checkpoint({"step": step})
    first.report(step=30, samples=120, loss=0.03)  # after the last checkpoint: redone on resume

    second = Context(trial(str(tmp_path), attempt=2), "cpu")
    assert second.load_checkpoint() == {"step": 20}
    rows = [second._out.get_nowait() for _ in range(3)]
    assert [(r.attempt, r.step, r.samples) for r in rows] == [(2, 0, 0), (2, 10, 40), (2, 20, 80)]
    with pytest.raises(ValueError, match="does not increase"):
        second.report(step=20, loss=0.5)
    assert second.report(step=30, samples=120, loss=0.05) is True  # loss <= 0.1 with stop_on_success
    assert second.outcome.first_success == 30
    # the wall clock continues from the checkpoint's
    assert second._rows[-1].wall_s >= rows[-1].wall_s


def test_load_after_report_is_refused(tmp_path):
    ctx = Context(trial(str(tmp_path)), "cpu")
    ctx.report(step=0, loss=1.0)
    with pytest.raises(RuntimeError, match="before the attempt's first ctx.report"):
        ctx.load_checkpoint()


def test_checkpoints_on_an_object_store(s3_store):
    c = code(f"{s3_store}/checkpoints")
    assert load_checkpoint(c, "t1") is None
    save_checkpoint(c, "t1", {"step": 5, "blob": b"x" * 100_000})
    assert load_checkpoint(c, "t1") == {"step": 5, "blob": b"x" * 100_000}
    assert checkpoint_folder(c, "t1") == f"{s3_store}/checkpoints/t1"
    drop_checkpoint(c, "t1")
    assert load_checkpoint(c, "t1") is None


def test_outcome_is_the_one_rule():
    o = Outcome(Success("loss", "<=", 0.1, stop_on_success=False), None, max_steps=100)
    assert o.see(0, 0, {"loss": 0.05}) is None and o.first_success == 0  # success noted, no stop
    assert o.see(50, 5, {"loss": float("nan")}) == "diverged"
    assert o.see(100, 10, {"loss": 0.0}) == "diverged"  # once ended, stays ended
    assert Outcome(Success("loss"), None, max_steps=None).see(10**9, 0, {"loss": 1.0}) is None


def test_outcome_says_when_stop_on_success_ended_the_attempt():
    stopped = Outcome(Success("loss", "<=", 0.1), None, max_steps=100)
    assert stopped.see(0, 0, {"loss": 0.5}) is None and not stopped.stopped_at_success
    assert stopped.see(10, 1, {"loss": 0.05}) == "finished" and stopped.stopped_at_success
    ran = Outcome(Success("loss", "<=", 0.1, stop_on_success=False), None, max_steps=100)
    assert ran.see(10, 1, {"loss": 0.05}) is None and ran.see(100, 10, {"loss": 0.01}) == "finished"
    assert not ran.stopped_at_success  # it succeeded, and ran on to max_steps
    budget = Outcome(Success("loss", "<=", 0.1), None, max_steps=100)
    assert budget.see(100, 10, {"loss": 0.5}) == "finished" and not budget.stopped_at_success
    diverged = Outcome(Success("loss", "<=", 0.1), None, max_steps=100)
    assert diverged.see(10, 1, {"loss": float("nan")}) == "diverged" and not diverged.stopped_at_success


def test_a_metric_whose_final_column_is_a_parameter_is_refused(tmp_path):
    a = trial(str(tmp_path))
    ctx = Context(Assignment(dataclasses.replace(a.trial, params=(("final_loss", 0.5),)), 1), "cpu")
    with pytest.raises(ValueError, match="a metric cannot be named 'loss': a parameter of the trial is named "
                                         "'final_loss', the column of the metric's final value"):
        ctx.report(step=0, loss=1.0)
    assert not ctx.report(step=0, acc=0.5)


def test_a_count_past_int64_is_refused_before_it_reaches_the_store(tmp_path):
    """A step, sample count or n_params past 2**63-1 would fail the driver's Parquet write of every
    row beside it: the report refuses it, and only that trial fails."""
    ctx = Context(trial(str(tmp_path)), "cpu")
    with pytest.raises(ValueError, match=r"step must be at most 2\*\*63-1"):
        ctx.report(step=2**70, loss=1.0)
    with pytest.raises(ValueError, match=r"samples must be at most 2\*\*63-1"):
        ctx.report(step=1, samples=2**63, loss=1.0)
    assert ctx.report(step=2**63 - 1, samples=0, loss=1.0) is False


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tmp_path, monkeypatch):
    import os

    c = code(str(tmp_path))
    save_checkpoint(c, "t1", {"step": 1})
    real_fsync = os.fsync

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        save_checkpoint(c, "t1", {"step": 2})
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert load_checkpoint(c, "t1") == {"step": 1}
    assert sorted(p.name for p in (tmp_path / "t1").iterdir()) == [CHECKPOINT_FILE]

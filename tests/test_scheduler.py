"""How the scheduler fills its queue and splits it into calls (no Ray needed: `submit`, `_dispatch`
and `_requeue` are the driver's alone; the workers are stand-ins that accept calls)."""

from __future__ import annotations

from collections import deque

import pytest

from paretolab.orchestrator.grid import expand
from paretolab.orchestrator.scheduler import Scheduler, _Call, _Slot
from paretolab.vocabulary.sweep import Resources
from paretolab.spec import parse_yaml
from paretolab.vocabulary.trial import Assignment

SPEC = """\
sweep: queue
task: sparse_parity
task_args: {n: 10, k: 2}
model: mlp
fixed: {width: 8}
seeds: 1000
max_steps: 10
"""
TRIALS = list(expand(parse_yaml(SPEC)))


def queued(n: int, start: int = 0) -> deque[Assignment]:
    return deque(Assignment(t, 1) for t in TRIALS[start:start + n])


class Counted:
    """`n` trials with `len()` known ahead, drawn lazily (as `Plan.pending`); `drawn` counts them."""

    def __init__(self, n: int):
        self.n, self.drawn = n, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        for t in TRIALS[:self.n]:
            self.drawn += 1
            yield t


class Accepting:
    """A worker actor stand-in: `run.remote(chunk)` accepts the call."""

    class run:
        @staticmethod
        def remote(chunk):
            return object()


def packing_scheduler(n: int, workers: int, pack: int, writer=None) -> Scheduler:
    s = Scheduler(writer=writer, n_workers=workers, resources=Resources(pack_size=pack))
    s.start()
    s.slots = [_Slot(actor=Accepting(), ready=None) for _ in range(workers)]
    s.submit(TRIALS[:n], {})
    assert (s.packing, s._pack) == (True, pack)
    return s


def chunks(slot: _Slot) -> list[int]:
    return [len(c.chunk) for c in slot.calls]


def test_the_first_worker_up_leaves_the_others_their_share():
    # 200 packable trials, 2 workers, packs of up to 256: each worker trains one pack of 100 at
    # once. The first worker up must not take the share of the one still starting, and the second
    # must not get half of what is left (it made two packs run one after the other).
    s = packing_scheduler(200, workers=2, pack=256)
    a, b = s.slots
    a.up = True
    s._dispatch()
    assert chunks(a) == [100] and chunks(b) == []  # b is not up: no work for it yet
    b.up = True
    s._dispatch()
    assert chunks(a) == [100] and chunks(b) == [100] and not s.queue


def test_a_worker_that_frees_up_takes_a_fair_share_of_what_is_left():
    s = packing_scheduler(100, workers=2, pack=16)
    a, b = s.slots
    a.up = b.up = True
    s._dispatch()
    assert chunks(a) == chunks(b) == [16]  # at most a pack each
    a.calls.clear()  # a ended its pack; 6 of b's 16 members are still training
    b.calls[0].ended.update(a.trial.trial_id for a in b.calls[0].chunk[:10])
    s.queue = queued(20, start=32)
    s._dispatch()
    assert chunks(a) == [13] and len(s.queue) == 7  # (20 queued + 6 held) / 2; the rest waits for b


def test_a_stream_is_drawn_as_the_queue_runs_low():
    # 1000 trials submitted as a stream; 1 worker, packs of 16: the queue holds a few calls' worth
    # (QUEUE_AHEAD x MAX_CHUNK per worker), not the 1000, and is refilled as calls take from it.
    from paretolab.orchestrator.scheduler import MAX_CHUNK, QUEUE_AHEAD

    stream = Counted(1000)
    s = Scheduler(writer=None, n_workers=1, resources=Resources(pack_size=16))
    s.start()
    s.slots = [_Slot(actor=Accepting(), ready=None)]
    s.submit(stream, {})
    ahead = QUEUE_AHEAD * MAX_CHUNK
    assert ahead < 1000 and stream.drawn == len(s.queue) == len(s.configs) == ahead and s.counts.total == 1000
    a = s.slots[0]
    a.up = True
    taken = []
    while s.queue:
        s._dispatch()
        taken += [x.trial.trial_id for x in a.calls[0].chunk]
        a.calls.clear()
        assert len(s.queue) <= ahead
    assert stream.drawn == 1000 and taken == [t.trial_id for t in TRIALS[:1000]]  # each once, in grid order


@pytest.mark.parametrize("max_attempts", [2, 3])
def test_a_trial_requeued_after_its_worker_died_goes_behind_the_queue_and_alone_at_its_last_attempt(
        tmp_path, max_attempts):
    # 2 workers, packs of 16, 100 trials. Worker a dies with its pack of 16: they go behind the 68
    # still queued (no longer in front of them); for their last attempt each in a call of its own,
    # so that a trial that kills its worker takes down only itself then; before it, packed again.
    from paretolab.store import Store, StoreWriter

    s = packing_scheduler(100, workers=2, pack=16, writer=StoreWriter(Store(tmp_path / "r")))
    s.max_attempts = max_attempts
    a, b = s.slots
    a.up = b.up = True
    s._dispatch()
    dead = a.calls.pop()
    s._requeue(dead, "worker lost (test)")
    lost = [x.trial.trial_id for x in dead.chunk]
    assert [x.trial.trial_id for x in s.queue] == [t.trial_id for t in TRIALS[32:100]] + lost
    assert [x.attempt for x in s.queue][-16:] == [2] * 16 and s.counts.retried == 16
    calls = []  # every call from now on, in order
    while s.queue:
        b.calls.clear()
        s._dispatch()
        calls += [[x.trial.trial_id for x in c.chunk] for c in a.calls + b.calls]
        a.calls.clear()
    assert sum(calls, []) == [t.trial_id for t in TRIALS[32:100]] + lost  # each once, the lost ones last
    with_lost = [c for c in calls if set(c) & set(lost)]
    if max_attempts == 2:
        assert with_lost == [[x] for x in lost]  # the last attempt: alone
    else:
        assert max(len(c) for c in with_lost) > 1  # not the last attempt: packed again


def test_a_trial_whose_worker_died_at_its_last_attempt_is_failed_with_the_reason(tmp_path):
    from paretolab.store import Store, StoreWriter

    store = Store(tmp_path / "r")
    s = packing_scheduler(4, workers=1, pack=4, writer=StoreWriter(store))
    s.max_attempts = 2
    (a,) = s.slots
    a.up = True
    s._dispatch()
    first = a.calls.pop()
    first.ended.add(first.chunk[0].trial.trial_id)  # its result had arrived before the worker died
    s._requeue(first, "worker lost (ActorDiedError: the actor died)")
    assert [(x.trial, x.attempt) for x in s.queue] == [(x.trial, 2) for x in first.chunk[1:]]
    s._dispatch()
    (second,) = a.calls
    assert [x.trial for x in second.chunk] == [first.chunk[1].trial]  # alone
    s._requeue(second, "worker lost (ActorDiedError: the actor died)")
    s.writer.flush()
    rows = store.query("SELECT trial_id, attempt, status, error FROM trials_all").to_pylist()
    assert rows == [{"trial_id": first.chunk[1].trial.trial_id, "attempt": 2, "status": "failed",
                     "error": "worker lost (ActorDiedError: the actor died); gave up after 2 attempts"}]
    assert s.counts.failed == 1 and len(s.queue) == 2 and first.chunk[1].trial.trial_id not in s.configs


def test_running_counts_trials_in_training_not_calls():
    """A worker trains its first call's trials a pack at a time; its queued call is not running."""
    s = packing_scheduler(n=20, workers=2, pack=6)
    for slot in s.slots:
        slot.up = True
    s._dispatch()
    assert all(slot.calls for slot in s.slots)
    first = s.slots[0].calls[0]
    assert s._training() == sum(min(6, len(slot.calls[0].chunk)) for slot in s.slots) > 2
    first.ended.update(a.trial.trial_id for a in first.chunk[:len(first.chunk) - 1])
    assert s._training() == 1 + min(6, len(s.slots[1].calls[0].chunk))

"""How the scheduler splits the queue into calls (no Ray needed: `_dispatch` is the driver's alone;
the workers are stand-ins that accept calls)."""

from __future__ import annotations

from collections import deque

from paretolab.orchestrator.scheduler import Scheduler, _Slot
from paretolab.orchestrator.sweep import Resources


class Accepting:
    """A worker actor stand-in: `run.remote(chunk)` accepts the call."""

    class run:
        @staticmethod
        def remote(chunk):
            return object()


def packing_scheduler(queued: int, workers: int, pack: int) -> Scheduler:
    s = Scheduler(writer=None, n_workers=workers, resources=Resources(pack_size=pack))
    s.start()
    s.packing, s._pack = True, pack
    s.queue = deque(range(queued))
    s.slots = [_Slot(actor=Accepting(), ready=None) for _ in range(workers)]
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
    b.calls[0].ended.update(b.calls[0].chunk[:10])
    s.queue = deque(range(20))
    s._dispatch()
    assert chunks(a) == [13] and len(s.queue) == 7  # (20 queued + 6 held) / 2; the rest waits for b

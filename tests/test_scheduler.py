"""How the scheduler splits the queue into calls (no Ray needed: the sizing is the driver's alone)."""

from __future__ import annotations

from collections import deque

from paretolab.orchestrator.scheduler import Scheduler, _Call, _Slot
from paretolab.orchestrator.sweep import Resources


def packing_scheduler(queued: int, workers: int, pack: int) -> Scheduler:
    s = Scheduler(writer=None, n_workers=workers, resources=Resources(pack_size=pack))
    s.start()
    s.packing, s._pack = True, pack
    s.queue = deque(range(queued))
    s.slots = [_Slot(actor=None, ready=None) for _ in range(workers)]
    return s


def take(s: Scheduler, slot: _Slot) -> _Call:
    """What `_dispatch` does for `slot`, without a worker to call."""
    call = _Call(slot, [s.queue.popleft() for _ in range(min(s._chunk_size(), len(s.queue)))])
    slot.calls.append(call)
    return call


def test_the_first_worker_up_leaves_the_others_their_share():
    # 200 packable trials, 2 workers, packs of up to 256: each worker trains one pack of 100 at
    # once. The first worker up must not take the share of the one still starting, and the second
    # must not get half of what is left (it made two packs run one after the other).
    s = packing_scheduler(200, workers=2, pack=256)
    a, b = s.slots
    assert len(take(s, a).chunk) == 100
    assert len(take(s, b).chunk) == 100 and not s.queue


def test_a_worker_that_frees_up_takes_a_fair_share_of_what_is_left():
    s = packing_scheduler(100, workers=2, pack=16)
    a, b = s.slots
    first, second = take(s, a), take(s, b)
    assert len(first.chunk) == len(second.chunk) == 16
    a.calls.remove(first)  # a ended its pack; b's has 6 of 16 members left
    second.ended.update(second.chunk[:10])
    # queue 68 + 6 in flight over 2 workers: 37, capped at a pack
    assert len(take(s, a).chunk) == 16
    s.queue = deque(range(20))
    a.calls.clear()
    assert len(take(s, a).chunk) == 13  # (20 + 6) / 2: the rest goes to b when it frees up

"""The driver loop: a queue of assignments, long-lived worker actors, results into the store.

Work is taken all at once (`run`) or incrementally (`start`, `submit`, `wait_any`, `drain`, `close`:
what adaptive search uses, keeping the workers alive between batches). Submitted trials are drawn
into the queue as it runs low (a grid's `Plan.pending` builds each trial as it is drawn), so the
driver holds only the trials queued or running, whatever the grid's size. The driver is the single
writer of the store. It keeps every worker busy with up to two calls in
flight, each a chunk of assignments sized so that one call lasts about `target_call_s` (tiny trials
travel many per round trip; long ones one at a time). Workers stream `Report`s back; rows go to
the `StoreWriter` as they arrive. A worker that dies has its unfinished assignments re-queued
with attempt + 1 (up to `max_attempts`), behind the queue (its last attempt in a call of its own),
and is replaced; work goes only to workers that are up.
"""

from __future__ import annotations

import dataclasses
import math
import re
import signal
import time
from collections import Counter, deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

import ray

from paretolab.store import StoreWriter
from paretolab.vocabulary.errors import ClusterError
from paretolab.orchestrator.events import Counts, Interrupted, Observer
from paretolab.orchestrator.session import Session, worker_key
from paretolab.vocabulary.schema import metric_row, trial_row
from paretolab.vocabulary.sweep import Resources
from paretolab.workers.actor import Worker
from paretolab.workers.checkpoints import drop_checkpoint
from paretolab.workers.packing import PackPlan
from paretolab.workers.attempt import failed
from paretolab.vocabulary.trial import Assignment, Code, Pruning, Report, TrialConfig, TrialResult

CALLS_IN_FLIGHT = 2  # per worker: the next chunk is already queued when one ends
# With packing, one call per worker: a call is a pack that lasts seconds (round trips do not
# matter), and splitting the queue into a second, smaller pack per worker made each worker run
# packs one after the other instead of one pack of all its trials (benchmarks/vs_ray_tune.py).
PACKED_CALLS_IN_FLIGHT = 1
MAX_CHUNK = 256
# The queue is refilled from the submitted trials up to this many workers' next calls (of at most
# MAX_CHUNK each): enough for every worker's next chunk and its fair share, and no more held.
QUEUE_AHEAD = 2
# What a call ends with when its worker process is gone: died or killed (also by Ray's memory
# monitor, when the node runs low on memory: the run once stopped with that error), or its node lost.
WORKER_LOST = (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.OutOfMemoryError,
               ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.ObjectLostError)
# On Ctrl-C, trials of the researcher's own code are asked to stop (their `ctx.report` answers True)
# and given this long to return, saving a checkpoint if they keep one; built-in trials stop at once.
INTERRUPT_GRACE_S = 30.0
# Workers that die before they are up, one after another, mean they cannot start (a broken install
# on the nodes, say): the run stops with the error rather than replacing them forever.
MAX_START_FAILURES = 3


@dataclass
class _Slot:
    actor: object
    ready: object  # resolves once the actor is placed and constructed
    calls: list[_Call] = field(default_factory=list)
    node: str = ""
    dead: bool = False
    up: bool = False
    warm: bool = False  # taken from a session's idle workers


@dataclass
class _Source:
    """Submitted trials not drawn into the queue yet: `left` of them still to come from `trials`."""

    trials: Iterator[TrialConfig]
    left: int
    attempts: dict[str, int]
    prune: Pruning | None


@dataclass
class _Call:
    slot: _Slot
    chunk: list[Assignment]
    gen: object = None
    ended: set[str] = field(default_factory=set)


class Scheduler:
    """Runs assignments on `n_workers` actors of `resources` each and writes results through `writer`."""

    def __init__(self, writer: StoreWriter, n_workers: int, resources: Resources, max_attempts: int = 3,
                 observer: Observer | None = None, report_every_s: float = 1.0, target_call_s: float = 0.25,
                 name: str = "", actor_options: dict | None = None, pool: Session | None = None,
                 code: Code | None = None):
        self.name = name
        self.actor_options = actor_options or {}  # e.g. the runtime environment that ships the researcher's code
        self.writer = writer
        self.n_workers = n_workers
        self.resources = resources
        self.max_attempts = max_attempts
        self.observer = observer or Observer()
        self.report_every_s = report_every_s
        self.target_call_s = target_call_s
        self._trial_s: float | None = None  # running estimate of one trial's duration
        self._start_failures = 0
        # a session's idle workers alike to this run's (`orchestrator.session`), taken as workers start
        self.pool = pool
        self._key = worker_key(resources, report_every_s, self.actor_options, code)
        self._warm: list = []

    def run(self, trials: Collection[TrialConfig], attempts: dict[str, int]) -> Counts:
        """Run every trial once to its end; `attempts[id]` is the last attempt already made (0 if none).

        The same as `start()`, `submit(trials, attempts)`, `drain()`, `close()`, without keeping
        the results for `wait_any` (the store has them).

        Raises:
            Interrupted: on Ctrl-C, after writing every row that had arrived.
        """
        self.start(keep_results=False)
        try:
            self.submit(trials, attempts)
            self.drain()
        finally:  # (on an error too: in a session, Ray stays up, and a worker left running would hold its share)
            self.close()
        return self.counts

    def start(self, keep_results: bool = True) -> None:
        """Begin a run that takes work incrementally (`submit`, `wait_any`, `drain`); workers start
        with the first submitted trials and live until `close()`. Without `keep_results`, results
        are not kept for `wait_any` and `drain`."""
        self.configs: dict[str, TrialConfig] = {}  # the trials queued or running
        self.packing: bool | None = None  # decided by the first submitted trial
        self.queue: deque[Assignment] = deque()
        self._sources: deque[_Source] = deque()
        self._unstreamed = 0  # submitted trials not drawn into the queue yet
        self._alone: set[str] = set()  # queued trials re-queued after their worker died
        self._keep_results = keep_results
        self.counts = Counts(total=0)
        self.slots: list[_Slot] = []
        self._ended: list[TrialResult] = []
        # metric rows received per (trial, attempt) still running: the trial row records its count
        # (`curve_rows`), by which the store tells a whole curve from one cut short
        self._curve_rows: Counter[tuple[str, int]] = Counter()
        self._last_tick = 0.0
        self._winding = False  # Ctrl-C: taking the last reports of trials asked to stop
        # checkpoints of trials that ended, dropped once the trials' rows are written (a trial whose
        # row is lost with the driver resumes from its checkpoint on the rerun)
        self._unkept: list[tuple[Code, str]] = []
        self._warm = self.pool.take(self._key) if self.pool is not None else []
        self.observer.on_start(self.name, self.counts)

    def submit(self, trials: Collection[TrialConfig], attempts: dict[str, int], prune: Pruning | None = None) -> None:
        """Queue `trials` (each once; `attempts[id]` is the last attempt already made, 0 if none),
        to run under the pruning rule `prune` if given.

        `trials` is a list or any iterable whose `len()` is known ahead (`grid.Plan.pending`): it is
        drawn from as the queue runs low, after the trials submitted before it.
        """
        if not len(trials):
            return
        self._sources.append(_Source(iter(trials), len(trials), attempts, prune))
        self.counts.total += len(trials)
        self._unstreamed += len(trials)
        if self.packing is None:
            self._refill(1)
            if self.queue:
                # packing applies when allowed and the trials can be packed (a sweep has one model and optimizer)
                first = self.queue[0].trial
                self._plan = PackPlan("cuda" if self.resources.gpu > 0 else "cpu", self.resources.pack_size)
                self.packing = self._plan.key(first) is not None
                self._pack = self._plan.size(first)
        self._refill()
        while len(self.slots) < min(self.n_workers, self.counts.total):
            self.slots.append(self._spawn())

    def _refill(self, want: int | None = None) -> None:
        """Draw submitted trials into the queue until it holds `want`, by default `QUEUE_AHEAD`
        rounds of full calls."""
        want = want or QUEUE_AHEAD * MAX_CHUNK * self._calls_in_flight() * self.n_workers
        while self._sources and len(self.queue) < want:
            source = self._sources[0]
            trial = next(source.trials, None) if source.left else None
            if trial is None:  # drawn whole (or it held fewer trials than its len() said)
                self._sources.popleft()
                self.counts.total -= source.left
                self._unstreamed -= source.left
                continue
            source.left -= 1
            self._unstreamed -= 1
            self.configs[trial.trial_id] = trial
            self.queue.append(Assignment(trial, source.attempts.get(trial.trial_id, 0) + 1, source.prune))

    @property
    def pending(self) -> int:
        """Submitted trials that have not ended yet (queued or running)."""
        return self.counts.total - self.counts.done

    def wait_any(self) -> list[TrialResult]:
        """Block until at least one submitted trial ends (or none is pending) and return the results
        that ended since the previous call, in the order they arrived.

        Raises:
            Interrupted: on Ctrl-C, after writing every row that had arrived (the workers are stopped).
        """
        self._guarded(lambda: self.counts.done < self.counts.total and not self._ended)
        ended, self._ended = self._ended, []
        return ended

    def drain(self) -> list[TrialResult]:
        """Run every submitted trial to its end; return the results not yet returned by `wait_any`."""
        self._guarded(lambda: self.counts.done < self.counts.total)
        self.counts.running = 0
        self.observer.on_tick(self.counts)
        ended, self._ended = self._ended, []
        return ended

    def close(self) -> None:
        """Stop the workers (or, in a session, give the idle ones back to it) and write every buffered row."""
        self._shutdown(keep=True)

    def _guarded(self, busy) -> None:
        try:
            self._loop(busy)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, lambda *_: _exit_now())
            self._wind_down()
            self._shutdown(keep=False)
            raise Interrupted() from None

    def _wind_down(self) -> None:
        """Ask the workers running the researcher's code to stop, and take what they send (rows, the
        results of trials that end) for up to `INTERRUPT_GRACE_S`; nothing is dispatched or re-queued."""
        self._winding = True
        own = [s for s in self.slots if s.up and not s.dead and any(
            a.trial.kind != "builtin" and a.trial.trial_id not in c.ended for c in s.calls for a in c.chunk)]
        if not own:
            return
        for slot in own:
            slot.actor.interrupt.remote()
        running = sum(1 for s in own for c in s.calls[:1] for a in c.chunk if a.trial.trial_id not in c.ended)
        self.observer.on_stopping(min(running, len(own)), INTERRUPT_GRACE_S)
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while time.monotonic() < deadline:
            calls = {c.gen: c for s in own for c in s.calls if not s.dead}
            if not calls:
                break
            ready, _ = ray.wait(list(calls), num_returns=1, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            for ref in ready:
                self._receive(calls[ref])
            self.writer.maybe_flush()

    def _loop(self, busy) -> None:
        while busy():
            self._dispatch()
            calls = {c.gen: c for s in self.slots for c in s.calls}
            starting = {s.ready: s for s in self.slots if not s.up}
            ready, _ = ray.wait([*calls, *starting], num_returns=1, timeout=0.2)
            for ref in ready:
                if ref in starting:
                    self._started(starting[ref])
                else:
                    self._receive(calls[ref])
            self.writer.maybe_flush()
            self._drop_checkpoints()
            if time.monotonic() - self._last_tick > 0.25:
                self.counts.running = self._training()
                self.observer.on_tick(self.counts)
                self._last_tick = time.monotonic()

    def _training(self) -> int:
        """Trials in training, not calls (`running 1` was shown while a pack of 6 trained): a worker
        trains its first call's trials one pack at a time (one trial at a time unpacked); its other
        calls wait."""
        return sum(min(self._pack, len(s.calls[0].chunk) - len(s.calls[0].ended)) for s in self.slots if s.calls)

    def _spawn(self) -> _Slot:
        """A worker: an idle one of the session if one is left, else a new actor."""
        if self._warm:
            handle = self._warm.pop()
            return _Slot(handle, handle.__ray_ready__.remote(), warm=True)
        r = self.resources
        actor = ray.remote(concurrency_groups=Worker.CONCURRENCY_GROUPS)(Worker).options(
            num_cpus=r.cpu, num_gpus=r.gpu, max_restarts=0, **self.actor_options)
        device = "cuda" if r.gpu > 0 else "cpu"
        handle = actor.remote(max(1, math.floor(r.cpu)), self.report_every_s, device)
        return _Slot(handle, handle.__ray_ready__.remote())

    def _started(self, slot: _Slot) -> None:
        """A worker is up (it gets work from now on), or died starting (it is replaced). Work goes
        only to workers that are up, so a replacement that the cluster cannot place (a lost node on
        a fixed-size cluster) holds no trials: the others run them."""
        try:
            ray.get(slot.ready)
        except ray.exceptions.RayError as e:
            if slot.warm:  # an idle worker that died between runs (its node lost, say): not a failure to start
                self.slots[self.slots.index(slot)] = self._spawn()
                return
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                raise ClusterError(f"{self._start_failures} worker actors died while starting; the last: "
                                   f"{_root_cause(e)}") from None
            ray.kill(slot.actor, no_restart=True)
            self.slots[self.slots.index(slot)] = self._spawn()
            return
        slot.up, self._start_failures = True, 0

    def _calls_in_flight(self) -> int:
        return PACKED_CALLS_IN_FLIGHT if self.packing else CALLS_IN_FLIGHT

    def _dispatch(self) -> None:
        self._refill()
        starting = sum(1 for s in self.slots if not s.up)
        for _ in range(self._calls_in_flight()):  # round-robin: every worker gets its share first
            for slot in self.slots:
                # a worker's next call waits while the queue holds no more than the workers still
                # starting will take (two long trials went to the first worker up, one after the other)
                if slot.calls and starting and len(self.queue) + self._unstreamed <= starting * self._chunk_size():
                    continue
                if slot.up and self.queue and len(slot.calls) < self._calls_in_flight():
                    chunk = self._take()
                    call = _Call(slot, chunk)
                    call.gen = slot.actor.run.remote(self._plan.units(chunk))  # the packs, decided here
                    slot.calls.append(call)

    def _take(self) -> list[Assignment]:
        """The next call's assignments, from the front of the queue: up to `_chunk_size`, except that
        a trial re-queued after its worker died goes alone (were it what kills its worker, it would
        take down only itself: the trials beside it in a pack or chunk lose an attempt once, not
        every time), and the others stop short of it."""
        size = self._chunk_size()
        chunk = [self.queue.popleft()]
        if chunk[0].trial.trial_id in self._alone:
            self._alone.discard(chunk[0].trial.trial_id)
            return chunk
        while len(chunk) < size and self.queue and self.queue[0].trial.trial_id not in self._alone:
            chunk.append(self.queue.popleft())
        return chunk

    def _chunk_size(self) -> int:
        # A chunk holds at least a pack (the worker packs within a chunk), else enough trials for
        # about `target_call_s` of work, and never more than a fair share of what is left: of the
        # queue and of what the calls in flight have not ended yet, so that the first worker up
        # does not take the share of a worker still starting, and a later one not less than its own.
        pack = self._pack  # as `_plan` sizes the packs of the first trial's shape (`pack_size: auto` included)
        by_time = 1 if self._trial_s is None else int(self.target_call_s / max(self._trial_s, 1e-6))
        held = sum(len(c.chunk) - len(c.ended) for s in self.slots for c in s.calls)
        left = len(self.queue) + self._unstreamed + held
        balanced = math.ceil(left / (self._calls_in_flight() * len(self.slots)))
        return max(1, min(MAX_CHUNK, max(by_time, pack), balanced))

    def _receive(self, call: _Call) -> None:
        if call.slot.dead:  # its unfinished trials are already re-queued
            return
        try:
            report: Report = ray.get(next(call.gen))
        except StopIteration:
            call.slot.calls.remove(call)
            if not self._winding:  # (an interrupted call ends without the results of trials it stopped)
                self._requeue(call, "the worker ended a call without a result")
            return
        except WORKER_LOST as e:
            if self._winding:
                call.slot.dead = True
                call.slot.calls.clear()
            else:
                self._worker_lost(call.slot, e)
            return
        call.slot.node = report.node
        self.observer.on_report(report)
        self.writer.append("metrics", [metric_row(r) for r in report.rows])
        self._curve_rows.update((r.trial_id, r.attempt) for r in report.rows)
        for result in report.results:
            call.ended.add(result.trial_id)
            self._record(result, call.slot.node)

    def _record(self, result: TrialResult, node: str) -> None:
        curve_rows = self._curve_rows.pop((result.trial_id, result.attempt), 0)
        config = self.configs.pop(result.trial_id)
        self.writer.append("trials", [trial_row(config, result, node, curve_rows)])
        if config.code is not None and result.status != "failed" and not config.code.keep_checkpoints:
            self._unkept.append((config.code, result.trial_id))
        c = self.counts
        c.done += 1
        c.succeeded += result.success
        c.failed += result.status == "failed"
        c.diverged += result.status == "diverged"
        c.pruned += result.status == "pruned"
        if self._keep_results:
            self._ended.append(result)
        if result.wall_s > 0:
            self._trial_s = result.wall_s if self._trial_s is None else 0.8 * self._trial_s + 0.2 * result.wall_s

    def _worker_lost(self, slot: _Slot, error: Exception) -> None:
        if slot.dead:
            return
        slot.dead = True
        reason = f"worker lost ({type(error).__name__}: {str(error).splitlines()[0]})"
        for call in slot.calls:
            self._requeue(call, reason)
        ray.kill(slot.actor, no_restart=True)
        self.slots[self.slots.index(slot)] = self._spawn()

    def _requeue(self, call: _Call, reason: str) -> None:
        for a in call.chunk:
            if a.trial.trial_id in call.ended:
                continue
            if a.attempt >= self.max_attempts:
                self._record(failed(a.trial, a.attempt, f"{reason}; gave up after {a.attempt} attempts"), call.slot.node)
            else:
                self._curve_rows.pop((a.trial.trial_id, a.attempt), None)  # that attempt will not end
                self.counts.retried += 1
                # Behind the queue: a trial that kills its worker every time must not take every
                # attempt while the others wait. Its last attempt runs alone (`_take`), so that such
                # a trial takes down only itself then, and no trial fails for a neighbour's sake;
                # before that, re-queued trials pack again (a lost node's 256-member pack rerun
                # member by member took 77 s instead of 12 in tests/test_packed.py).
                if a.attempt + 1 >= self.max_attempts:
                    self._alone.add(a.trial.trial_id)
                self.queue.append(dataclasses.replace(a, attempt=a.attempt + 1))

    def _shutdown(self, keep: bool) -> None:
        """Stop the workers, except, when `keep` and a session is given, those up and idle, which go
        back to the session (an interrupted run keeps none: its workers may be winding a trial down).
        Idle: every trial of its calls has ended (the call's stream may not have said its last yet)."""
        kept = [s.actor for s in self.slots if keep and s.up and not s.dead and all(
            len(c.ended) == len(c.chunk) for c in s.calls)] if self.pool is not None else []
        for slot in self.slots:
            if slot.actor not in kept:
                ray.kill(slot.actor, no_restart=True)
        self.slots = []  # (a second call stops nothing more)
        if keep:
            kept += self._warm  # taken from the session but not needed
        else:
            for actor in self._warm:
                ray.kill(actor, no_restart=True)
        self._warm = []
        if kept:
            self.pool.give(self._key, kept)
        self.writer.flush()
        self._drop_checkpoints()

    def _drop_checkpoints(self) -> None:
        """Delete the checkpoints of ended trials whose rows are written (none are left buffered)."""
        if self._unkept and not self.writer.buffered("trials"):
            for code, trial_id in self._unkept:
                drop_checkpoint(code, trial_id)
            self._unkept = []


def _root_cause(error: Exception) -> str:
    """The line of a Ray error that names what went wrong inside the worker (its last `...Error:`
    line), without terminal colours."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(error).splitlines()]
    causes = [line for line in lines if re.match(r"[\w.]*(Error|Exception): ", line)]
    return causes[-1] if causes else next((line for line in lines if line), type(error).__name__)


def _exit_now() -> None:
    import os

    os._exit(130)

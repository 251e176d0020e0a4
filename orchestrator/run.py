"""A run, start to end: a parsed sweep against a store, under the store's write lock.

A grid: plan it against the store, write the sweep's row once the run can start, connect to Ray,
run what the store lacks, flush, disconnect, compact. A search or tuning: the same, batch by batch,
its row rewritten as the trials it uses grow. A dry run: count and show, touching neither Ray nor
the store. Each ends in a `RunSummary` whose `mode` says which of these happened.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import islice

from paretolab.clusters import connect as cluster
from paretolab.orchestrator.events import Counts, Interrupted, Observer, RunSummary
from paretolab.orchestrator.grid import Plan, axes, count, expand, parameter_names
from paretolab.orchestrator.session import Session
from paretolab.orchestrator.shipping import actor_options, placed
from paretolab.store import Store, StoreWriter
from paretolab.vocabulary.errors import ClusterError, UsageError
from paretolab.vocabulary.trial import TrialConfig

COMPACT_ABOVE_FILES = 32  # a run that leaves more files than this in a table merges them
# A bigger grid is most likely a typo (the papers' largest grid is 2x10^5 trials): `run` wants
# `yes=True` (--yes). Not for memory: a grid plans in about 10 bytes per trial (`grid.Plan`); but
# planning 10^7 trials takes seconds and their sweeps row lists every id (16 bytes each, one row).
CONFIRM_ABOVE_TRIALS = 10_000_000


def run_sweep(sweep, st: Store, address: str | None = None, workers: int | None = None, dry_run: bool = False,
              retry_failed: bool = False, observer: Observer | None = None, session: Session | None = None) -> RunSummary:
    """Run every trial of `sweep` that `st` does not hold yet (its search or tuning, if it has one).

    Args:
        sweep: a parsed `Sweep`, of any size (`paretolab.run` refuses one over `CONFIRM_ABOVE_TRIALS`
            unless told otherwise).
        st: the result store.
        address: Ray address to join; None starts (or reuses) a local Ray.
        workers: number of worker actors; None fills the cluster with `resources`-sized slots.
        dry_run: count and show trials, touch neither Ray nor the store.
        retry_failed: run again trials whose last attempt failed.
        observer: receives progress events.
        session: keeps Ray and the idle workers up after the run, for the next (`orchestrator.session`);
            None: Ray is shut down at the end if this run started it, and the workers stopped.
    Returns:
        A `RunSummary`; its `mode` says what was done.
    Raises:
        SpecError, StoreError, ClusterError, UsageError: a bad spec, store, cluster or `workers`.
        Interrupted: on Ctrl-C, after flushing what had arrived.
    """
    if sweep.code is not None:
        sweep = placed(sweep, st, address)
    if dry_run:
        return _dry_run(sweep, st, address, retry_failed)
    where = _Where(address, workers, observer, session)
    if sweep.search is not None or sweep.tune is not None:
        return _search(sweep, st, where, retry_failed)
    return _grid(sweep, st, where, retry_failed)


@dataclass(frozen=True)
class _Where:
    """Where and how a run's trials run: the Ray address, the number of workers, who watches, and
    the session that keeps Ray and workers warm (if any)."""

    address: str | None
    workers: int | None
    observer: Observer | None
    session: Session | None


def _grid(sweep, st: Store, where: _Where, retry_failed) -> RunSummary:
    # the grid is walked, not held: ids and a bit each, then the trials to run are built as they run
    plan = _plan(sweep, st, retry_failed)
    start = time.monotonic()
    with _lock(st):
        writer = StoreWriter(st)
        if not plan.to_run:
            _record_sweep(st, writer, sweep, plan)
            return RunSummary("nothing_to_run", **_counted(sweep, st, plan))
        counts = _execute(sweep, plan.pending, st, writer, where, record=plan)
        _compact(st)
    return RunSummary("ran", **_counted(sweep, st, plan), ran=counts.done, succeeded=counts.succeeded,
                      failed=counts.failed, diverged=counts.diverged, wall_s=time.monotonic() - start)


def _search(sweep, st: Store, where: _Where, retry_failed) -> RunSummary:
    """Run the sweep's search or tuning (orchestrator.strategy.drive) over its grid's trials (a small
    grid); the sweep's row lists the trials it used so far, rewritten as they grow."""
    from paretolab.orchestrator.search import strategy_for
    from paretolab.orchestrator.strategy import drive

    candidates = list(expand(sweep))
    start = time.monotonic()
    used: dict[str, TrialConfig] = {}
    last_write = [0.0]

    def record_used() -> None:
        for row_sweep, row_trials in strategy.records(sweep, list(used.values())):
            _record_sweep(st, writer, row_sweep, row_trials)

    def on_trials(batch) -> None:
        grew = any(t.trial_id not in used for t in batch)
        used.update((t.trial_id, t) for t in batch)
        if grew and time.monotonic() - last_write[0] >= 2.0:
            record_used()
            last_write[0] = time.monotonic()

    with _lock(st):
        writer = StoreWriter(st)
        strategy = strategy_for(sweep, candidates, st.root)
        try:
            if (held := strategy.answered(st)) is not None:  # a finished search: its answer, without Ray
                used.update((t.trial_id, t) for t in held)
                counts, result = Counts(total=0), strategy.result()
            else:
                attempts = st.last_attempts()
                with _scheduler(sweep, st, writer, where) as scheduler:
                    scheduler.start()  # an adaptive run submits batch after batch to the same workers
                    try:
                        result = drive(strategy, scheduler, st, attempts, on_trials, retry_failed)
                    finally:
                        scheduler.close()
                counts = scheduler.counts
        finally:
            strategy.close()
            if used:
                record_used()
        _compact(st)
    return RunSummary("searched", sweep=sweep.name, store=st.root or st.uri, total=len(used),
                      already_done=len(used) - counts.done, axes=tuple(axes(sweep)), ran=counts.done,
                      succeeded=counts.succeeded, failed=counts.failed, diverged=counts.diverged,
                      pruned=counts.pruned, wall_s=time.monotonic() - start, search=result)


def _dry_run(sweep, st: Store, address, retry_failed) -> RunSummary:
    if (n := count(sweep)) > CONFIRM_ABOVE_TRIALS:  # too large to check against the store without running it
        warning = _local_shortfall(sweep, address)
        return RunSummary("dry_run_too_large", sweep=sweep.name, store=st.root or st.uri, total=n,
                          already_done=None, axes=tuple(axes(sweep)), first_configs=_first_configs(expand(sweep)),
                          warning=warning)
    from paretolab.orchestrator.search import asked_as_it_goes, describe

    counted = _counted(sweep, st, _plan(sweep, st, retry_failed))
    shown = {"warning": _local_shortfall(sweep, address), "search": describe(sweep)}
    if (n_asked := asked_as_it_goes(sweep)) is not None:  # no trial to list ahead, none to count as done
        asked = {"total": n_asked, "already_done": None}
        return RunSummary("dry_run_search_unlisted", **counted | asked, **shown)
    return RunSummary("dry_run" if shown["search"] is None else "dry_run_search", **counted, **shown,
                      first_configs=_first_configs(expand(sweep)))


def _plan(sweep, st: Store, retry_failed: bool) -> Plan:
    return Plan(sweep, st.ended(retry_failed) if st.exists() else frozenset())


def _counted(sweep, st: Store, plan: Plan) -> dict:
    """The summary's fields that a grid's plan gives."""
    return {"sweep": sweep.name, "store": st.root or st.uri, "total": plan.total, "already_done": plan.already_done,
            "axes": tuple(axes(sweep))}


def _local_shortfall(sweep, address: str | None) -> str | None:
    """A dry run's check of `resources` (it starts no Ray): against this machine when the run would
    start a local Ray (no address, `local`), else None (a cluster is checked when `run` joins it)."""
    if (address or os.environ.get("RAY_ADDRESS") or "local") != "local":
        return None
    return cluster.missing(sweep.resources.cpu, sweep.resources.gpu, cluster.this_machine(), where="this machine")


def _first_configs(trials) -> list[dict]:
    """What a dry run shows of its first five trials: their columns and ids."""
    return [t.columns() | {"trial_id": t.trial_id} for t in islice(trials, 5)]


@contextmanager
def _lock(st: Store):
    """`st.lock()`; a run refused before it wrote anything leaves no new store folder behind."""
    existed = st.root is None or st.root.exists()
    with st.lock():
        try:
            yield
        except BaseException:
            if not existed and not any(st.files(t) for t in ("trials", "metrics", "sweeps")):
                (st.root / ".lock").unlink(missing_ok=True)  # nothing else was written
                with suppress(OSError):
                    st.root.rmdir()
            raise


def _compact(st: Store) -> None:
    for table in ("trials", "metrics"):
        st.compact(table, min_files=COMPACT_ABOVE_FILES + 1)


def _execute(sweep, pending: Collection[TrialConfig], st: Store, writer: StoreWriter, where: _Where,
             record: Plan | None = None) -> Counts:
    """Run `pending` on Ray (see `_scheduler`) and return the run's counts."""
    attempts = st.last_attempts()
    with _scheduler(sweep, st, writer, where, record) as scheduler:
        return scheduler.run(pending, attempts)


@contextmanager
def _scheduler(sweep, st: Store, writer: StoreWriter, where: _Where, record: Plan | None = None) -> Iterator:
    """A `Scheduler` on Ray, connected here (Ray started if this call starts it, or kept up by the
    session) and checked for room for one worker; `record`'s sweep row is written once the run can
    start (a refused run writes nothing). On the way out the last rows are flushed and Ray shut down
    whole (unless a session keeps it), with Ctrl-C held; a Ctrl-C that came then ends the run as
    `Interrupted`, unless an error is already on its way out. The Ctrl-C handler in place before the
    run is in place after it (a notebook's kernel interrupts the next cell as before).
    """
    from paretolab.orchestrator.scheduler import Scheduler

    started = False
    handler = _sigint_handler()
    try:
        # a Ctrl-C while Ray starts: KeyboardInterrupt, Ray shut down
        if where.session is not None:
            where.session.connect(where.address)
        else:
            started = cluster.connect(where.address)
        # Ray would wait forever to place a worker no node can hold (seen: `done 0/4, running 0`)
        if (short := cluster.missing(sweep.resources.cpu, sweep.resources.gpu, cluster.cluster_nodes())) is not None:
            raise ClusterError(short)
        n = where.workers or cluster.slots(sweep.resources.cpu, sweep.resources.gpu)
        if n < 1:
            raise UsageError(f"the cluster has no room for one worker of {sweep.resources}; lower `resources`")
        if record is not None:
            _record_sweep(st, writer, sweep, record)
        yield Scheduler(writer, n, sweep.resources, sweep.max_attempts, where.observer, name=sweep.name,
                        actor_options=actor_options(sweep, st), pool=where.session, code=sweep.code)
    finally:
        with cluster.held_ctrl_c() as held:  # the last rows reach the store and Ray shuts down whole
            writer.flush()
            if started:
                cluster.disconnect()
        _restore_sigint(handler)
        if held and sys.exc_info()[0] is None:  # an error on its way out is kept
            raise Interrupted()


def _sigint_handler():
    """The Ctrl-C handler in place (None off the main thread, where none can be set)."""
    import signal
    import threading

    return signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None


def _restore_sigint(handler) -> None:
    """Put back the Ctrl-C handler of before the run: an interrupted run made a second Ctrl-C end the
    process at once (`Scheduler`), which in a notebook's kernel would end the kernel."""
    import signal

    if handler is not None:
        signal.signal(signal.SIGINT, handler)


def _record_sweep(st: Store, writer: StoreWriter, sweep, trials: list[TrialConfig] | Plan) -> None:
    """Write the sweep's row, unless its latest row has the same spec and trial ids. `trials`: a
    list of `TrialConfig`s, or a grid's `Plan` (whose ids are listed without building its trials)."""
    import pyarrow as pa

    if isinstance(trials, Plan):
        ids, first = trials.trial_ids(), next(expand(sweep), None)
    else:
        ids, first = [t.trial_id for t in trials], trials[0] if trials else None
    if st.files("sweeps"):
        latest = st.query("SELECT spec, trial_ids FROM sweeps WHERE sweep = ?", [sweep.name])
        if latest.num_rows and latest.column("spec")[0].as_py() == sweep.source:
            stored = latest.column("trial_ids")[0].values
            if stored is not None and len(stored) == len(ids) and stored.cast(pa.string()).equals(pa.array(ids, pa.string())):
                return
    s = sweep.success
    writer.append("sweeps", [{
        "sweep": sweep.name, "spec": sweep.source, "path": str(sweep.path),
        "submitted_at": datetime.now(timezone.utc), "trial_ids": ids,
        "axes": axes(sweep), "parameters": parameter_names(sweep) if first is not None else [],
        "success_metric": s.metric, "success_op": s.op, "success_value": s.value,
    }])
    writer.flush()

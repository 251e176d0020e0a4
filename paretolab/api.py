"""The public Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager, suppress
from itertools import islice
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from paretolab.store import Store, StoreWriter
from paretolab.vocabulary.errors import ClusterError, UsageError

DEFAULT_STORE = "results"
COMPACT_ABOVE_FILES = 32  # a run that leaves more files than this in a table merges them
# A bigger grid is most likely a typo (the papers' largest grid is 2x10^5 trials): `run` wants
# `yes=True` (--yes). Not for memory: a grid plans in about 10 bytes per trial (`grid.Plan`); but
# planning 10^7 trials takes seconds and their sweeps row lists every id (16 bytes each, one row).
CONFIRM_ABOVE_TRIALS = 10_000_000


def store_path(store: str | Path | None = None) -> str | Path:
    """The store: `store`, else `$PARETOLAB_STORE`, else `./results`. A folder is a Path; a URI of
    another filesystem (`s3://bucket/prefix`, `gs://...`) stays a str."""
    where = store or os.environ.get("PARETOLAB_STORE") or DEFAULT_STORE
    return str(where) if "://" in str(where) else Path(where)


def open_store(store: str | Path | None = None) -> Store:
    """The result store at `store`, a folder or a URI (default: `$PARETOLAB_STORE` or `./results`)."""
    return Store(store_path(store))


@dataclass(frozen=True)
class RunSummary:
    """What `run` did. `ran` counts trials run now; `already_done` those the store already had (None in
    a dry run of a grid over `CONFIRM_ABOVE_TRIALS` trials, which is not checked against the store, and
    in a dry run of an Optuna search, whose `total` is its most trials: points x seeds)."""

    sweep: str
    store: str | Path
    total: int
    already_done: int | None
    axes: tuple[str, ...] = ()
    ran: int = 0
    succeeded: int = 0
    failed: int = 0
    diverged: int = 0
    pruned: int = 0  # stopped early by a search's pruner (not failed)
    wall_s: float = 0.0
    first_configs: list[dict] = field(default_factory=list)
    search: object = None  # an adaptive run's answer (frontier boundaries, Optuna's best trials, tuned values); a dry run: what it will do
    warning: str | None = None  # a dry run: what would stop `run` here (a worker needs a GPU this machine lacks, say)


def run(spec, store: str | Path | None = None, address: str | None = None, workers: int | None = None,
        dry_run: bool = False, retry_failed: bool = False, observer=None, yes: bool = False) -> RunSummary:
    """Run every trial of a sweep that the store does not hold yet.

    Args:
        spec: path of a `.yaml`/`.py` spec, or a parsed `Sweep`.
        store: result store folder (default `$PARETOLAB_STORE` or `./results`).
        address: Ray address to join; None starts (or reuses) a local Ray.
        workers: number of worker actors; None fills the cluster with `resources`-sized slots.
        dry_run: count and show trials, touch neither Ray nor the store.
        retry_failed: run again trials whose last attempt failed.
        observer: an `orchestrator.events.Observer` receiving progress events.
        yes: run a sweep of more than `CONFIRM_ABOVE_TRIALS` trials (otherwise refused).
    Returns:
        A `RunSummary`.
    Raises:
        SpecError, StoreError, ClusterError, UsageError: bad spec, store, cluster or arguments.
        orchestrator.events.Interrupted: on Ctrl-C, after flushing what had arrived.
    """
    import time

    from paretolab.orchestrator.grid import Plan, axes, expand
    from paretolab.spec import load_spec

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    sweep = spec if not isinstance(spec, (str, Path)) else load_spec(spec)
    n = _confirm_size(sweep, yes or dry_run)
    st = open_store(store)
    if sweep.code is not None:
        sweep = _placed(sweep, st, address)
    if dry_run and n > CONFIRM_ABOVE_TRIALS:
        return _large_dry_run(sweep, st, n, _local_shortfall(sweep, address))
    if not dry_run and (sweep.search is not None or sweep.tune is not None):  # their candidate grids are small
        return _adaptive(sweep, list(expand(sweep)), st, address, workers, observer, retry_failed, time.monotonic())
    # the grid is walked, not held: ids and a bit each, then the trials to run are built as they run
    plan = Plan(sweep, st.ended(retry_failed) if st.exists() else frozenset())
    summary = dict(sweep=sweep.name, store=st.root or st.uri, total=plan.total, already_done=plan.already_done,
                   axes=tuple(axes(sweep)))
    if dry_run:
        from paretolab.orchestrator.search import describe, n_points
        from paretolab.vocabulary.sweep import OptunaSearch

        summary["warning"] = _local_shortfall(sweep, address)
        if isinstance(sweep.search, OptunaSearch):  # asked as it goes: no trial to list ahead, none to count as done
            return RunSummary(**summary | dict(total=n_points(sweep.search) * len(sweep.seeds), already_done=None),
                              search=describe(sweep))
        return RunSummary(**summary, first_configs=_first_configs(expand(sweep)),
                          search=describe(sweep))
    start = time.monotonic()
    with _lock(st):
        writer = StoreWriter(st)
        if not plan.to_run:
            _record_sweep(st, writer, sweep, plan)
            return RunSummary(**summary)
        counts = _execute(sweep, plan.pending, st, writer, address, workers, observer, record=plan)
        for table in ("trials", "metrics"):
            st.compact(table, min_files=COMPACT_ABOVE_FILES + 1)
    return RunSummary(**summary, ran=counts.done, succeeded=counts.succeeded, failed=counts.failed,
                      diverged=counts.diverged, wall_s=time.monotonic() - start)


def _adaptive(sweep, candidates, st: Store, address, workers, observer, retry_failed, start) -> RunSummary:
    """Run the sweep's search or tuning (orchestrator.search.drive); the sweep's row lists the trials
    it used so far, rewritten as they grow."""
    import time

    from paretolab.orchestrator.search import drive, strategy_for

    used: dict[str, object] = {}
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
                from paretolab.orchestrator.events import Counts

                used.update((t.trial_id, t) for t in held)
                counts, result = Counts(total=0), strategy.result()
            else:
                counts, result = _execute(sweep, None, st, writer, address, workers, observer,
                                          lambda sched, attempts: drive(strategy, sched, st, attempts, on_trials, retry_failed))
        finally:
            strategy.close()
            if used:
                record_used()
        for table in ("trials", "metrics"):
            st.compact(table, min_files=COMPACT_ABOVE_FILES + 1)
    from paretolab.orchestrator.grid import axes

    return RunSummary(sweep=sweep.name, store=st.root or st.uri, total=len(used), already_done=len(used) - counts.done,
                      axes=tuple(axes(sweep)), ran=counts.done, succeeded=counts.succeeded, failed=counts.failed,
                      diverged=counts.diverged, pruned=counts.pruned, wall_s=time.monotonic() - start, search=result)


def _confirm_size(sweep, yes: bool) -> int:
    """The sweep's trial count; UsageError above `CONFIRM_ABOVE_TRIALS` unless `yes`."""
    from paretolab.orchestrator.grid import count

    n = count(sweep)  # without expanding: a mistyped grid may hold more trials than memory does
    if n > CONFIRM_ABOVE_TRIALS and not yes:
        raise UsageError(f"{sweep.path}: grid has {n:,} trials (> {CONFIRM_ABOVE_TRIALS:,}); "
                         "pass --yes to run it, or --dry-run to look first")
    return n


def _local_shortfall(sweep, address: str | None) -> str | None:
    """A dry run's check of `resources` (it starts no Ray): against this machine when the run would
    start a local Ray (no address, `local`), else None (a cluster is checked when `run` joins it)."""
    if (address or os.environ.get("RAY_ADDRESS") or "local") != "local":
        return None
    from paretolab.clusters.connect import missing, this_machine

    return missing(sweep.resources.cpu, sweep.resources.gpu, this_machine(), where="this machine")


def _large_dry_run(sweep, st: Store, n: int, warning: str | None = None) -> RunSummary:
    """A dry run of a grid too large to expand at once: its size and first trials; the store is not
    checked against all of it (`already_done` is None)."""
    from paretolab.orchestrator.grid import axes, expand

    return RunSummary(sweep=sweep.name, store=st.root or st.uri, total=n, already_done=None,
                      axes=tuple(axes(sweep)), first_configs=_first_configs(islice(expand(sweep), 5)), warning=warning)


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


def _execute(sweep, pending, st: Store, writer: StoreWriter, address, workers, observer, adaptive=None,
             record=None):
    from paretolab.clusters.connect import cluster_nodes, connect, disconnect, held_ctrl_c, missing, slots
    from paretolab.orchestrator.events import Interrupted
    from paretolab.orchestrator.scheduler import Scheduler

    attempts = st.last_attempts()
    started = False
    try:
        started = connect(address)  # a Ctrl-C while Ray starts: KeyboardInterrupt, Ray shut down
        # Ray would wait forever to place a worker no node can hold (seen: `done 0/4, running 0`)
        if (short := missing(sweep.resources.cpu, sweep.resources.gpu, cluster_nodes())) is not None:
            raise ClusterError(short)
        n = workers or slots(sweep.resources.cpu, sweep.resources.gpu)
        if n < 1:
            raise UsageError(f"the cluster has no room for one worker of {sweep.resources}; lower `resources`")
        if record is not None:  # the sweep's row, once the run can start: a refused run writes nothing
            _record_sweep(st, writer, sweep, record)
        scheduler = Scheduler(writer, n, sweep.resources, sweep.max_attempts, observer, name=sweep.name,
                              actor_options=_shipping(sweep, st))
        if adaptive is None:
            return scheduler.run(pending, attempts)
        scheduler.start()  # an adaptive run submits batch after batch to the same workers
        try:
            result = adaptive(scheduler, attempts)
        finally:
            scheduler.close()
        return scheduler.counts, result
    finally:
        with held_ctrl_c() as held:  # the last rows reach the store and Ray shuts down whole
            writer.flush()
            if started:
                disconnect()
        if held and sys.exc_info()[0] is None:  # an error on its way out is kept
            raise Interrupted()


def _placed(sweep, st: Store, address: str | None):
    """`sweep` with its code's checkpoints placed (the store's `checkpoints/` folder unless the spec
    sets `checkpoint_dir`) and, when the run joins a cluster, marked to be shipped to its workers:
    the run is given an address other than `local` (or `RAY_ADDRESS` is one), or this process is
    connected already to a Ray it did not start itself (which `connect` keeps, whatever the address)."""
    import dataclasses

    from paretolab.vocabulary.schema import CHECKPOINTS

    code = sweep.code
    checkpoints = code.checkpoints or (str(st.root.resolve() / CHECKPOINTS) if st.root is not None and st.loc.local
                                       else f"{st.uri.rstrip('/')}/{CHECKPOINTS}")
    ray = sys.modules.get("ray")  # not imported for it: a process that has not imported Ray is not connected
    if ray is not None and ray.is_initialized():
        node = ray._private.worker._global_node  # None in a Ray Client session; `head` when ray.init() started it
        joins = node is None or not node.head
    else:
        joins = (address or os.environ.get("RAY_ADDRESS") or "local") != "local"
    def place(c):
        return dataclasses.replace(c, checkpoints=c.checkpoints or checkpoints, shipped=joins)

    return dataclasses.replace(sweep, code=place(code), codes=tuple((name, place(c)) for name, c in sweep.codes))


def _shipping(sweep, st: Store) -> dict:
    """The worker actors' options that ship the researcher's code to a cluster: the spec's folder as
    Ray's `working_dir` (without the store, the checkpoints, `.git` and caches; Ray also skips what
    a `.gitignore` or `.rayignore` there lists), and a package imported from outside it and outside
    the installed packages as a `py_modules` entry.

    Ray takes local folders only in `ray.init`'s job-wide environment (an actor's `runtime_env` must
    name packages the cluster already holds: Ray 2.60 refuses a path), so they are uploaded here, as
    `ray.init` does: zipped, content-addressed (an unchanged folder is not sent again), at most 512
    MiB zipped. Ray keeps an uploaded package while a worker uses it, and for 10 minutes after the
    upload (`RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S`).

    Raises:
        ClusterError: the folder cannot be uploaded (too large, unreadable).
    """
    code = sweep.code
    if code is None or not code.shipped:
        return {}
    import importlib.util
    import inspect
    import sysconfig
    import tempfile

    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed
    from ray._private.runtime_env.working_dir import upload_working_dir_if_needed

    from paretolab.vocabulary.errors import ClusterError
    from paretolab.workers.importing import split_target

    root = Path(code.root)
    common = [".git", "__pycache__", "*.pyc", ".venv"]  # gitignore-style patterns, relative to the folder uploaded
    inside = [Path(p).resolve() for p in (st.root, None if "://" in code.checkpoints else code.checkpoints) if p]
    excludes = common + ["/" + str(p.relative_to(root)) for p in inside if root in p.parents]
    installed = {Path(sysconfig.get_paths()[k]).resolve() for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    modules = set()
    codes = (code, *(c for _, c in sweep.codes))  # with `trainable` as an axis: one per function
    targets = {t for c in codes if c.kind == "function" for t in (c.name, c.vectorized) if t}
    for where in (split_target(t)[0] for t in targets):
        found = None if where.endswith(".py") else importlib.util.find_spec(where.split(".")[0])
        places = [] if found is None else list(found.submodule_search_locations or []) or \
            ([found.origin] if found.has_location else [])
        origin = Path(places[0]).resolve() if places else None  # a namespace package: its first folder
        if origin is not None and origin != root and root not in origin.parents and \
                not any(p in origin.parents for p in installed) and \
                not {"site-packages", "dist-packages"} & set(origin.parts):
            modules.add(str(origin))
    # Ray 2.52 added `include_gitignore` (what `ray.init` passes); before, the upload read the variable itself
    gitignore = {"include_gitignore": os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"} \
        if "include_gitignore" in inspect.signature(upload_working_dir_if_needed).parameters else {}
    try:
        with tempfile.TemporaryDirectory(prefix="paretolab-ship-") as scratch:
            env = upload_working_dir_if_needed({"working_dir": str(root), "excludes": excludes}, scratch_dir=scratch,
                                               **gitignore)
            if modules:
                env |= upload_py_modules_if_needed({"py_modules": sorted(modules), "excludes": common},
                                                   scratch_dir=scratch, **gitignore)
    except Exception as e:  # noqa: BLE001 - Ray's RuntimeEnvSetupError, ValueError or OSError
        raise ClusterError(f"cannot ship the code in {root} to the cluster: {str(e).splitlines()[0]}; keep large "
                           "files out of the spec's folder, or list them in a .gitignore or .rayignore there") from None
    env.pop("excludes", None)
    return {"runtime_env": env}


def _record_sweep(st: Store, writer: StoreWriter, sweep, trials) -> None:
    """Write the sweep's row, unless its latest row has the same spec and trial ids. `trials`: a
    list of `TrialConfig`s, or a grid's `Plan` (whose ids are listed without building its trials)."""
    import pyarrow as pa

    from paretolab.orchestrator.grid import Plan, axes, expand, parameter_names

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


def compact(store: str | Path | None = None) -> dict[str, int]:
    """Merge each table's files into one, under the store's write lock.

    Returns:
        The number of files merged per table.
    Raises:
        StoreError: no store there, or a run is writing it.
    """
    from paretolab.vocabulary.schema import TABLES

    st = open_store(store)
    if not st.exists():
        from paretolab.vocabulary.errors import StoreError

        raise StoreError(f"no result store at {st.uri} (run a sweep first, or pass --store PATH)")
    with st.lock():
        return {table: st.compact(table) for table in TABLES}

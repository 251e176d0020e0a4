"""The public Python API; the CLI is a thin layer over these functions. A run's sequence is
`orchestrator.run`'s."""

from __future__ import annotations

import os
from pathlib import Path

from paretolab.orchestrator.events import RunSummary
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError

DEFAULT_STORE = "results"


def store_path(store: str | Path | None = None) -> str | Path:
    """The store: `store`, else `$PARETOLAB_STORE`, else `./results`. A folder is a Path; a URI of
    another filesystem (`s3://bucket/prefix`, `gs://...`) stays a str."""
    where = store or os.environ.get("PARETOLAB_STORE") or DEFAULT_STORE
    return str(where) if "://" in str(where) else Path(where)


def open_store(store: str | Path | None = None) -> Store:
    """The result store at `store`, a folder or a URI (default: `$PARETOLAB_STORE` or `./results`)."""
    return Store(store_path(store))


def run(spec, store: str | Path | None = None, address: str | None = None, workers: int | None = None,
        dry_run: bool = False, retry_failed: bool = False, observer=None, yes: bool = False,
        warm: bool = True,
        progress: bool | None = None) -> RunSummary:
    """Run every trial of a sweep that the store does not hold yet.

    Args:
        spec: path of a `.yaml`/`.py` spec, a dict of the YAML keys (`paretolab.sweep`), or a parsed `Sweep`.
        store: result store folder (default `$PARETOLAB_STORE` or `./results`).
        address: Ray address to join; None starts (or reuses) a local Ray.
        workers: number of worker actors; None fills the cluster with `resources`-sized slots.
        dry_run: count and show trials, touch neither Ray nor the store.
        retry_failed: run again trials whose last attempt failed.
        observer: an `orchestrator.events.Observer` receiving progress events (no progress is shown then).
        yes: run a sweep of more than `orchestrator.run.CONFIRM_ABOVE_TRIALS` trials (otherwise refused).
        warm: keep Ray and the idle workers up after the run, so that the next run in this process
            starts training at once (`shutdown()` stops them; so does interpreter exit); False: Ray
            is shut down at the end of the run if the run started it (what the CLI does).
        progress: show a live progress bar and, at the end, the run's counts in a line: None shows them
            in a Jupyter kernel (the bar updated in the cell's output) or on a terminal, not when the
            output is a file or a pipe; True always (plain lines where there is no terminal); False never.
    Returns:
        A `RunSummary`; its `mode` says what was done.
    Raises:
        SpecError, StoreError, ClusterError, UsageError: bad spec, store, cluster or arguments.
        orchestrator.events.Interrupted: on Ctrl-C (a kernel's interrupt in a notebook), after flushing
            what had arrived; the same call again resumes the sweep.
    """
    from paretolab.orchestrator.run import run_sweep
    from paretolab.progress import headline
    from paretolab.spec import load_spec, parse_dict

    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    sweep = load_spec(spec) if isinstance(spec, (str, Path)) else parse_dict(spec) if isinstance(spec, dict) else spec
    _confirm_size(sweep, yes or dry_run)
    from paretolab.orchestrator.session import current

    view = None if observer is not None or dry_run else _progress_view(progress)
    try:
        summary = run_sweep(sweep, open_store(store), address=address, workers=workers, dry_run=dry_run,
                            retry_failed=retry_failed, observer=observer or view,
                            session=current() if warm and not dry_run else None)
    finally:
        if view is not None:
            view.close()
    if view is not None:
        view.say(headline(summary))
    return summary


def shutdown() -> None:
    """Stop the workers and the Ray that `run` keeps up between runs in this process (also done at
    interpreter exit); the next `run` starts them again. A Ray started before the first run (`ray.init`)
    is left up."""
    from paretolab.orchestrator.session import shutdown as end

    end()


def session():
    """A context manager: the runs in its `with` block share Ray and workers, stopped when it ends.

    ```
    with paretolab.session():
        paretolab.run(spec_a)
        paretolab.run(spec_b)  # starts training at once: Ray and the workers are up
    ```
    """
    from paretolab.orchestrator.session import session as scoped

    return scoped()


def _progress_view(progress: bool | None):
    """A `ProgressView` on stdout if `progress` wants one there (`progress.wanted`), else None."""
    import sys

    from rich.console import Console

    from paretolab.progress import ProgressView, wanted

    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    return ProgressView(console) if wanted(progress, console) else None


def _confirm_size(sweep, yes: bool) -> None:
    """UsageError if the sweep has more than `CONFIRM_ABOVE_TRIALS` trials, unless `yes`."""
    from paretolab.orchestrator.grid import count
    from paretolab.orchestrator.run import CONFIRM_ABOVE_TRIALS

    n = count(sweep)  # without expanding: a mistyped grid may hold more trials than memory does
    if n > CONFIRM_ABOVE_TRIALS and not yes:
        raise UsageError(f"{sweep.path}: grid has {n:,} trials (> {CONFIRM_ABOVE_TRIALS:,}); "
                         "pass --yes to run it, or --dry-run to look first")


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

"""The `paretolab` command: a thin layer over `paretolab.api` and `paretolab.analysis`.

Every `ParetolabError` becomes one line on stderr and exit status 2; Ctrl-C during a run exits 130
after flushing what had arrived.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from paretolab.errors import ParetolabError, UsageError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def _console(stderr: bool = False):
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not console.is_terminal:  # piped output: no wrapping of tables at 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=200)
    return console


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="paretolab", description="Run sweeps of small training runs on Ray; query the results with DuckDB.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    store_help = "result store folder (default: $PARETOLAB_STORE or ./results)"

    r = sub.add_parser("run", help="run every trial of a sweep spec that the store does not hold yet")
    r.add_argument("spec", help="sweep spec: a .yaml file, or a .py file defining trials()")
    r.add_argument("--store", help=store_help)
    r.add_argument("--address", help="Ray cluster address to join (default: $RAY_ADDRESS, else a local Ray)")
    r.add_argument("--workers", type=int, help="number of worker actors (default: fill the cluster)")
    r.add_argument("--dry-run", action="store_true", help="count the trials and show a few; run nothing")
    r.add_argument("--retry-failed", action="store_true", help="run again trials whose last attempt failed")

    s = sub.add_parser("status", help="done / failed / remaining per sweep, throughput and ETA")
    s.add_argument("--store", help=store_help)
    s.add_argument("--sweep", help="only this sweep")

    q = sub.add_parser("query", help="run SQL over the views trials, metrics, sweeps, sweep_trials")
    q.add_argument("sql")
    q.add_argument("--store", help=store_help)
    q.add_argument("--sweep", help="restrict the trials and metrics views to this sweep")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")

    w = sub.add_parser("sweeps", help="list the sweeps in the store")
    w.add_argument("--store", help=store_help)

    c = sub.add_parser("compact", help="merge each table's files into one (queries keep their answers)")
    c.add_argument("--store", help=store_help)

    e = sub.add_parser("export", help="write a compacted, self-describing Parquet copy of one sweep")
    e.add_argument("--sweep", required=True)
    e.add_argument("-o", "--out", required=True, help="output folder (trials/metrics/sweep.parquet)")
    e.add_argument("--store", help=store_help)
    return p


def main(argv: list[str] | None = None) -> int:
    err = _console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ParetolabError as e:
        err.print(f"error: {e}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED


def _run(args) -> int:
    from paretolab import api
    from paretolab.orchestrator.scheduler import Interrupted

    out = _console()
    if args.dry_run:
        return _dry_run(out, api.run(args.spec, store=args.store, dry_run=True, retry_failed=args.retry_failed))
    from paretolab.progress import ProgressView

    view = ProgressView(out)
    try:
        summary = api.run(args.spec, store=args.store, address=args.address, workers=args.workers,
                          retry_failed=args.retry_failed, observer=view)
    except Interrupted:
        view.close()
        print(f"interrupted: every result that arrived is in the store; rerun `paretolab run {' '.join(map(shlex.quote, sys.argv[2:]))}` to resume",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        view.close()
    store = _store_arg(summary.store)
    out.print(f"{summary.sweep}: {summary.total} trials ({summary.ran} run now, {summary.already_done} already in the store); "
              f"{summary.succeeded} succeeded, {summary.failed} failed, {summary.diverged} diverged in {summary.wall_s:.1f} s")
    out.print(f"results: {summary.store.resolve()}")
    out.print("next:")
    out.print(f"  paretolab status{store} --sweep {shlex.quote(summary.sweep)}")
    sql = "SELECT width, train_size, avg(success::INT) AS p_success, median(steps_to_success) AS steps FROM trials GROUP BY ALL ORDER BY ALL"
    out.print(f"  paretolab query{store} --sweep {shlex.quote(summary.sweep)} {shlex.quote(sql)}", markup=False)
    if summary.failed:
        out.print(f"  paretolab query{store} --sweep {shlex.quote(summary.sweep)} \"SELECT trial_id, error FROM trials WHERE status = 'failed'\"", markup=False)
    return 0


def _dry_run(out, summary) -> int:
    out.print(f"{summary.sweep}: {summary.total} trials, {summary.already_done} already in {summary.store}, "
              f"{summary.total - summary.already_done} to run")
    for cfg in summary.first_configs:
        out.print("  " + " ".join(f"{k}={v}" for k, v in cfg.items()), markup=False)
    if summary.total > len(summary.first_configs):
        out.print(f"  ... and {summary.total - len(summary.first_configs)} more")
    return 0


def _store_arg(path) -> str:
    from paretolab.api import DEFAULT_STORE, store_path

    return "" if store_path(None) == path and str(path) == DEFAULT_STORE else f" --store {shlex.quote(str(path))}"


def _status(args) -> int:
    from rich.table import Table

    from paretolab.analysis.status import status
    from paretolab.api import open_store

    rows = status(open_store(args.store), args.sweep)
    table = Table("sweep", "total", "ended", "succeeded", "failed", "diverged", "running/interrupted", "trials/s", "eta")
    for s in rows:
        table.add_row(s.sweep, str(s.total), str(s.ended), str(s.succeeded), str(s.failed), str(s.diverged),
                      str(s.started), f"{s.rate_per_s:.2f}" if s.rate_per_s else "-",
                      _duration(s.eta_s) if s.remaining else "done")
    _console().print(table)
    return 0


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _query(args) -> int:
    from paretolab.api import open_store

    _emit(open_store(args.store).query(args.sql, sweep=args.sweep), args.format)
    return 0


def _emit(result, fmt: str) -> None:
    """Print an Arrow table as a rich table, CSV or JSON records."""
    if fmt == "csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(result, sys.stdout.buffer)
    elif fmt == "json":
        print(json.dumps(result.to_pylist(), default=str))
    else:
        _print_table(result)


def _print_table(result) -> None:
    from rich.table import Table

    table = Table(*result.column_names)
    for row in result.to_pylist():
        table.add_row(*("NULL" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in row.values()))
    _console().print(table)


def _sweeps(args) -> int:
    from paretolab.api import open_store

    _print_table(open_store(args.store).query(
        "SELECT sweep, len(trial_ids) AS trials, submitted_at, path FROM sweeps ORDER BY submitted_at"))
    return 0


def _compact(args) -> int:
    from paretolab.api import compact

    merged = compact(args.store)
    _console().print(", ".join(f"{t}: {n} files merged" for t, n in merged.items()))
    return 0


def _export(args) -> int:
    from paretolab.analysis.export import export
    from paretolab.api import open_store

    counts = export(open_store(args.store), args.sweep, args.out)
    for name, rows in counts.items():
        _console().print(f"{args.out}/{name}: {rows} rows", markup=False)
    return 0


COMMANDS = {"run": _run, "status": _status, "query": _query, "sweeps": _sweeps, "compact": _compact,
            "export": _export}

if __name__ == "__main__":
    sys.exit(main())

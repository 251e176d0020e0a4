"""The `paretolab` command: a thin layer over `paretolab.api` and `paretolab.analysis`.

Every `ParetolabError` becomes one line on stderr and exit status 2; Ctrl-C during a run exits 130
after flushing what had arrived.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from paretolab.vocabulary.errors import ParetolabError, UsageError
from paretolab.terminal import plain, printable

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ERROR_CHARS = 2_000  # an error line longer than this is cut in its middle, keeping the fix at its end


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
    r.add_argument("--yes", action="store_true", help="run a sweep of more than 10,000,000 trials (refused without it)")

    s = sub.add_parser("status", help="done / failed / remaining per sweep, throughput and ETA")
    s.add_argument("--store", help=store_help)
    s.add_argument("--sweep", help="only this sweep")

    q = sub.add_parser("query", help="run SQL over the views trials, metrics, sweeps, sweep_trials "
                                     "(and with --sweep: cells, frontier, transitions)")
    q.add_argument("sql")
    q.add_argument("--store", help=store_help)
    q.add_argument("--sweep", help="restrict trials and metrics to this sweep and add its cells, frontier, "
                                   "transitions views")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")

    w = sub.add_parser("sweeps", help="list the sweeps in the store")
    w.add_argument("--store", help=store_help)

    _analysis_parsers(sub, store_help)

    for kind in ("tasks", "models"):
        k = sub.add_parser(kind, help=f"list the {kind} (built-in and from installed packages) with their parameters")
        k.add_argument("--format", choices=("table", "csv", "json"), default="table")

    sc = sub.add_parser("schema", help="print the JSON Schema of a sweep spec (for editors), with the installed "
                                       "plug-in tasks and models")
    sc.add_argument("-o", "--output", metavar="FILE", help="write it to FILE instead")

    c = sub.add_parser("compact", help="merge each table's files into one (queries keep their answers)")
    c.add_argument("--store", help=store_help)

    d = sub.add_parser("doctor", help="check every file of the store; move unreadable and leftover files to _quarantine/")
    d.add_argument("--store", help=store_help)
    d.add_argument("--check", action="store_true", help="only report (exit 1 if there are problems); move nothing")

    sv = sub.add_parser("serve", help="a live, read-only web view of the store: sweeps, phase diagrams, frontiers, "
                                      "curves, cells, failures (docs/serve.md)")
    sv.add_argument("--store", help=store_help)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                                                        "0.0.0.0: every interface, every request then needs the printed token)")
    sv.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free one)")

    e = sub.add_parser("export", help="write a compacted, self-describing Parquet copy of one sweep")
    e.add_argument("--sweep", required=True)
    e.add_argument("-o", "--out", required=True, help="output folder (trials/metrics/sweep.parquet)")
    e.add_argument("--store", help=store_help)
    return p


def _fit_inputs(p, store_help: str) -> None:
    """What `fit` and `optimal` read: a sweep, or a table with its columns named."""
    p.add_argument("--sweep", action="append", help="the sweep; several (repeated, or a,b) are fitted per sweep")
    p.add_argument("--store", help=store_help)
    p.add_argument("--success", help="criterion recomputed from the curves, e.g. 'test_error<=0.05' (default: the sweep's own)")
    p.add_argument("--from", dest="source", metavar="FILE", help="fit a .csv or .parquet table instead of a sweep; "
                                                                "name its columns (or expressions) with --x/--y or --n/--d/--y")
    p.add_argument("--x", help="the axis (power, broken, censored; e.g. n, width, train_size)")
    p.add_argument("--y", help="power, censored: the cost (default steps_to_success); broken: any column; "
                               "chinchilla: the loss (default final_test_loss)")
    p.add_argument("--n", help="chinchilla: model size N (default n_params)")
    p.add_argument("--d", help="chinchilla: data D (default the tokens trained on: samples x tokens per example)")
    p.add_argument("--event", help="censored --from: true where the trial succeeded (its --y is then its time to success)")
    p.add_argument("--by", help="comma-separated columns fitted separately")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples")
    p.add_argument("--starts", type=int, help="chinchilla: run BFGS from only this many starts of the 4,500-point grid, "
                                              "those with the lowest objective (default: every start)")
    p.add_argument("--plot", metavar="FILE", help="also write the plot (.png, .svg or .pdf)")
    figure_options(p, "with --plot: ")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")


def figure_options(p, when: str = "") -> None:
    """--style, --size and --data of a figure (`paretolab plot`, and the --plot of an analysis)."""
    p.add_argument("--style", choices=("screen", "paper", "slide"), default="screen",
                   help=f"{when}screen (default); paper: small fonts, thin lines, text kept as text in PDF/SVG; "
                        "slide: large fonts, thick lines")
    p.add_argument("--size", metavar="W,H", help=f"{when}the figure's size in inches (default: the style's, per panel)")
    p.add_argument("--data", metavar="FILE.csv", help=f"{when}also write the numbers behind the figure as CSV")


def _analysis_parsers(sub, store_help: str) -> None:
    def common(p, plot: bool = True, fmt: bool = True):
        p.add_argument("--sweep", required=True, action="append",
                       help="the sweep; several (repeated, or a,b) are compared side by side, grouped by sweep")
        p.add_argument("--store", help=store_help)
        p.add_argument("--success", help="criterion recomputed from the curves, e.g. 'test_error<=0.05' "
                                         "(default: the sweep's own)")
        if plot:
            p.add_argument("--plot", metavar="FILE", help="also write the plot (.png, .svg or .pdf)")
            figure_options(p, "with --plot: ")
        if fmt:
            p.add_argument("--format", choices=("table", "csv", "json"), default="table")

    f = sub.add_parser("frontier", help="the Pareto frontier of the cells over the chosen objectives")
    common(f)
    f.add_argument("--minimize", help="comma-separated columns to minimize (default: the sweep's first numeric axis, "
                                      "train_size when it has one, and its cost, flops_to_success when recorded)")
    f.add_argument("--maximize", default="", help="comma-separated columns to maximize (e.g. p_success)")
    f.add_argument("--by", help="comma-separated axes: one frontier per combination")
    f.add_argument("--success-prob", type=float, default=0.5, help="cells below this success probability never qualify")
    f.add_argument("--all", action="store_true", help="list every cell with its on_frontier flag")

    c = sub.add_parser("cells", help="success probability (95%% Wilson interval) and median costs per cell")
    common(c, plot=False)
    c.add_argument("--axes", help="comma-separated axes to pool over (default: the sweep's axes)")
    c.add_argument("--include-pruned", action="store_true", help="count trials a search pruned as seeds (default: left out)")

    lk = sub.add_parser("luck", help="best-of-k: cost to the first success with k seeds, seeds needed")
    common(lk)
    lk.add_argument("--cost", default="steps_to_success", choices=("steps_to_success", "samples_to_success", "flops_to_success"))
    lk.add_argument("--target", type=float, default=0.9, help="probability of at least one success to size seeds for")
    lk.add_argument("--by", help="comma-separated axes of the cells (default: the sweep's axes; the plot draws one "
                                "line per cell)")

    ph = sub.add_parser("phases", help="the phase boundary along an axis, or per-trial transitions")
    common(ph, plot=False)
    ph.add_argument("--axis", help="the axis along which success probability crosses --target")
    ph.add_argument("--by", help="comma-separated axes (default: all other axes)")
    ph.add_argument("--target", type=float, default=0.5)
    ph.add_argument("--trials", action="store_true", help="per-trial plateau, onset, sharpness and grokking gap")
    ph.add_argument("--loss", help="--trials: the falling metric (default: test_loss, else one with 'loss' in its name)")
    ph.add_argument("--accuracy", help="--trials: the rising metric (default: test_acc, else one with 'acc' in its name)")

    ft = sub.add_parser("fit", help="a scaling law with bootstrap intervals: power (default), chinchilla, broken or "
                                    "censored, over a sweep or any table (docs/scaling.md)")
    _fit_inputs(ft, store_help)
    ft.add_argument("--form", choices=("power", "chinchilla", "broken", "censored"), default="power",
                    help="power: cost = a x**b over the trials that succeeded; chinchilla: L(N, D) = E + A/N**alpha + "
                         "B/D**beta; broken: a smoothly broken power law; censored: time to success with the trials "
                         "that never succeeded as censored")
    ft.add_argument("--breaks", type=int, default=1, help="--form broken: 1 or 2 breaks")
    ft.add_argument("--points", action="store_true", help="print the points fitted (fitted values, residuals) instead "
                                                         "of the parameters")
    ft.add_argument("--at", help="print the fit's predictions with their 95%% bootstrap band instead of the parameters, "
                                 "at these values of x (e.g. 256,512), or for chinchilla at N:D pairs (e.g. 1e9:2e10); "
                                 "points outside the data are marked extrapolated")

    op = sub.add_parser("optimal", help="compute-optimal model size N* and data D* per FLOP budget, from a "
                                        "Chinchilla-form fit, with bootstrap intervals (docs/scaling.md)")
    _fit_inputs(op, store_help)
    op.add_argument("--budgets", required=True, help="comma-separated FLOP budgets (C = 6 N D), e.g. 1e18,1e19,1e20")

    pl = sub.add_parser("plot", help="write one plot of a sweep")
    pl.add_argument("kind", choices=("frontier", "phase", "curves", "luck", "fit"))
    common(pl, plot=False, fmt=False)
    pl.add_argument("-o", "--out", required=True, help="output file (.png, .svg or .pdf)")
    pl.add_argument("--x", help="x: an axis (frontier: the sweep's first numeric axis; phase: its first axis; fit: "
                                "required) or, for curves, step (default), samples or flops")
    pl.add_argument("--y", help="y: the cost (frontier: flops_to_success when recorded; fit and luck: "
                                "steps_to_success), the second axis (phase: the sweep's second axis) or the metric "
                                "(curves: the sweep's success metric)")
    pl.add_argument("--by", help="comma-separated axes, one line per combination (frontier, curves, luck: the sweep's "
                                 "other axes; phase: lines along --x instead of a heat map; fit: one panel per group)")
    pl.add_argument("--facet", metavar="AXIS", help="one panel per value of this axis (every kind)")
    pl.add_argument("--metric", help="curves: the metric to plot (same as --y)")
    pl.add_argument("--trials", help="curves: comma-separated trial ids, each its own curve (default: one band per group)")
    figure_options(pl)

    r = sub.add_parser("report", help="one self-contained HTML page: frontier, phases, luck, curves, failures")
    r.add_argument("--sweep", required=True)
    r.add_argument("--store", help=store_help)
    r.add_argument("-o", "--out", required=True, help="output .html file")


def _split(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = lambda message, *_a, **_kw: f"warning: {printable(str(message))}\n"  # one line, no source
    err = _console(stderr=True)
    try:
        args = build_parser().parse_args(argv)
        if isinstance(getattr(args, "sweep", None), list):  # an analysis: one sweep, or several compared
            args.sweep = args.sweep[0] if len(args.sweep) == 1 else args.sweep
        if getattr(args, "plot", "") is None and (args.data or args.size or args.style != "screen"):
            raise UsageError(f"paretolab {args.command}: --style, --size and --data go with --plot FILE")
        return COMMANDS[args.command](args)
    except ParetolabError as e:
        err.print(_error_line(e), markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return EXIT_INTERRUPTED


def _error_line(e: ParetolabError) -> str:
    """The one line an error prints: control characters escaped, newlines too, and bounded (every
    value a message echoes is already bounded: see `errors.shown`; this bounds what is not)."""
    line = printable(f"error: {e}")
    if len(line) <= ERROR_CHARS:
        return line
    head, tail = ERROR_CHARS * 3 // 4, ERROR_CHARS // 4
    return f"{line[:head]} ... ({len(line) - head - tail:,} characters left out) ... {line[-tail:]}"


def _run(args) -> int:
    from paretolab import api
    from paretolab.orchestrator.events import Interrupted

    out = _console()
    if args.dry_run:
        summary = api.run(args.spec, store=args.store, dry_run=True, retry_failed=args.retry_failed)
        if summary.warning:  # the spec may be meant for a cluster: said, not refused (`run` here refuses it)
            _say(_console(stderr=True), f"warning: {summary.warning}; `paretolab run` on this machine would stop here "
                 "(give --address to run it on a cluster)")
        return _dry_run(out, summary)
    from paretolab.progress import ProgressView, headline

    view = ProgressView(out)
    try:
        summary = api.run(args.spec, store=args.store, address=args.address, workers=args.workers, yes=args.yes,
                          retry_failed=args.retry_failed, observer=view, warm=False)  # the process ends with the run
    except (Interrupted, KeyboardInterrupt):  # a Ctrl-C outside the scheduler's loop (before it, while Ray starts)
        view.close()
        print(printable(f"interrupted: every result that arrived is in the store; rerun `paretolab run "
                        f"{' '.join(map(shlex.quote, sys.argv[2:]))}` to resume"), file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        view.close()
    store, sweep = _store_arg(summary.store), shlex.quote(summary.sweep)
    _say(out, headline(summary))
    _say(out, f"results: {summary.store.resolve() if hasattr(summary.store, 'resolve') else summary.store}")
    if summary.mode == "searched":
        import pyarrow as pa

        _say(out, f"search: {summary.search.title()}")
        _print_table(pa.Table.from_pylist(summary.search.rows()))
    _say(out, "next:")
    _say(out, f"  paretolab status{store} --sweep {sweep}")
    keys = "".join(f"{a}, " for a in summary.axes)
    sql = f"SELECT {keys}avg(success::INT) AS p_success, median(steps_to_success) AS median_steps FROM trials GROUP BY ALL ORDER BY ALL"
    _say(out, f"  paretolab query{store} --sweep {sweep} {shlex.quote(sql)}")
    if summary.failed:
        _say(out, f"  paretolab query{store} --sweep {sweep} \"SELECT trial_id, error FROM trials WHERE status = 'failed'\"")
    return 0


def _dry_run(out, summary) -> int:
    from paretolab.progress import headline

    _say(out, headline(summary))
    if summary.search:
        _say(out, f"  {summary.search}")
        if summary.first_configs:
            _say(out, "  the grid's first trials:")
    for cfg in summary.first_configs:
        _say(out, "  " + " ".join(f"{k}={v}" for k, v in cfg.items()))
    if summary.first_configs and summary.total > len(summary.first_configs):
        _say(out, f"  ... and {summary.total - len(summary.first_configs):,} more")
    return 0


def _say(console, text: str) -> None:
    """Print a line that holds the user's text (sweep names, paths, values): printable, no markup."""
    console.print(printable(text), markup=False)


def _store_arg(path) -> str:
    from paretolab.api import DEFAULT_STORE, store_path

    return "" if store_path(None) == path and str(path) == DEFAULT_STORE else f" --store {shlex.quote(str(path))}"


def _status(args) -> int:
    from rich.table import Table

    from paretolab.analysis.status import status
    from paretolab.api import open_store

    rows = status(open_store(args.store), args.sweep)
    table = Table("sweep", "total", "ended", "succeeded", "failed", "diverged", "pruned", "running/interrupted",
                  "trials/s", "eta")
    for s in rows:
        table.add_row(plain(s.sweep), str(s.total), str(s.ended), str(s.succeeded), str(s.failed), str(s.diverged),
                      str(s.pruned), str(s.started), f"{s.rate_per_s:.2f}" if s.rate_per_s else "-",
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

    from paretolab.analysis.views import query

    _emit(query(open_store(args.store), args.sql, sweep=args.sweep), args.format)
    return 0


def _emit(result, fmt: str) -> None:
    """Print an Arrow table as a rich table, CSV or JSON records.

    CSV and JSON are what standard tools read: CSV quotes a field only where needed and holds a
    list or struct as JSON text, NULL as an empty field and NaN/inf as `nan`/`inf`; JSON is strict
    (NaN and inf, which JSON has no word for, become null). Timestamps are ISO 8601 text."""
    if fmt == "csv":
        import csv

        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(result.column_names)
        for batch in result.to_batches():
            out.writerows([_csv_field(v) for v in row.values()] for row in batch.to_pylist())
    elif fmt == "json":
        print(json.dumps(_json_value(result.to_pylist()), default=str, allow_nan=False))
    else:
        _print_table(result)


def _csv_field(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(_json_value(v), default=str, allow_nan=False)
    return v.isoformat() if hasattr(v, "isoformat") else v


def _json_value(v):
    """`v` with NaN and inf as None, in lists and dicts too."""
    if isinstance(v, float):
        return v if v - v == 0 else None  # false for NaN and +-inf
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    return v


def _print_table(result) -> None:
    from rich.table import Table

    table = Table()
    for name in result.column_names:
        table.add_column(plain(name))
    for row in result.to_pylist():
        table.add_row(*(plain("NULL" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for v in row.values()))
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


def _doctor(args) -> int:
    from paretolab.store.doctor import doctor
    from paretolab.api import open_store

    store = open_store(args.store)
    findings = doctor(store, repair=not args.check)
    for f in findings:
        print(printable(f"{f.file}: {f.problem}: {f.action}"), flush=True)
    if not findings:
        print(printable(f"{store.uri}: every file reads; nothing to do"))
    elif args.check:
        print(printable(f"{len(findings)} problem(s); run `paretolab doctor{_store_arg(store.root or store.uri)}` "
                        "to move them aside"))
        return 1
    return 0


def _serve(args) -> int:
    from paretolab.api import open_store
    from paretolab.serve import server

    store = open_store(args.store)
    store.exists()  # a folder that holds something else is refused; a store no run has written yet is shown as it appears
    bound = server.bind(args.host, args.port)
    try:
        server.run(store, bound, say=lambda line: print(printable(line), flush=True))
    except KeyboardInterrupt:  # uvicorn stops on Ctrl-C, then raises it again
        pass
    finally:
        bound.sock.close()
    print("stopped", flush=True)
    return 0


def _export(args) -> int:
    from paretolab.analysis.export import export
    from paretolab.api import open_store

    counts = export(open_store(args.store), args.sweep, args.out)
    for name, rows in counts.items():
        _console().print(printable(f"{args.out}/{name}: {rows} rows"), markup=False)
    return 0


def _frontier(args) -> int:
    from paretolab.analysis.frontier import default_objectives, frontier
    from paretolab.api import open_store

    store = open_store(args.store)
    maximize = [(c, "max") for c in _split(args.maximize) or []]
    if args.minimize is None:  # the sweep's own, less any column asked to be maximized
        minimize = [o for o in default_objectives(store, args.sweep) if o[0] not in {c for c, _ in maximize}]
    else:
        minimize = [(c, "min") for c in _split(args.minimize) or []]
    objectives = minimize + maximize
    if not objectives:
        raise UsageError("frontier needs at least one objective: --minimize or --maximize")
    _emit(frontier(store, args.sweep, objectives, by=_split(args.by), min_success_prob=args.success_prob,
                   success=args.success, all_cells=args.all), args.format)
    if args.plot:
        from paretolab.analysis import plots

        x, y = (objectives[0][0], objectives[-1][0]) if len(objectives) > 1 else (None, objectives[0][0])
        _write_figure(args, args.plot, lambda: plots.plot_frontier(
            store, args.sweep, x=x, y=y, by=_split(args.by), min_success_prob=args.success_prob, success=args.success))
    return 0


def _cells(args) -> int:
    from paretolab.analysis.cells import cells
    from paretolab.api import open_store

    _emit(cells(open_store(args.store), args.sweep, axes=_split(args.axes), success=args.success,
                include_pruned=args.include_pruned), args.format)
    return 0


def _luck(args) -> int:
    from paretolab.analysis.luck import luck
    from paretolab.api import open_store

    store = open_store(args.store)
    _emit(luck(store, args.sweep, cost=args.cost, target=args.target, success=args.success, axes=_split(args.by)), args.format)
    if args.plot:
        from paretolab.analysis import plots

        _write_figure(args, args.plot, lambda: plots.plot_luck(store, args.sweep, cost=args.cost, by=_split(args.by),
                                                               success=args.success))
    return 0


def _phases(args) -> int:
    from paretolab.analysis.phases import FROM_SWEEP, phase_boundary, transition_metrics, transitions
    from paretolab.api import open_store

    store = open_store(args.store)
    if args.trials:
        loss, accuracy = args.loss or FROM_SWEEP, args.accuracy or FROM_SWEEP
        _emit(transitions(store, args.sweep, loss=loss, accuracy=accuracy, success=args.success), args.format)
        with _sweep(store, args.sweep, args.success) as (con, _, criterion):
            notes = transition_metrics(con, criterion, loss, accuracy).notes
        for note in notes:  # after the table, on stderr: a --format csv/json stdout stays data
            _say(_console(stderr=True), f"note: {note}")
    elif args.axis:
        _emit(phase_boundary(store, args.sweep, args.axis, by=_split(args.by), target=args.target,
                             success=args.success), args.format)
    else:
        with _sweep(store, args.sweep) as (_, info, _c):
            axes = ", ".join(info.axes) or "none"
        raise UsageError(f"phases needs --axis AXIS (the phase boundary along it; axes of the sweep: {axes}) "
                         "or --trials (per-trial transitions)")
    return 0


def _fit(args) -> int:
    from paretolab.api import open_store

    _fit_source(args)
    if args.form != "broken" and args.breaks != 1:
        raise UsageError("--breaks goes with --form broken")
    if args.form != "chinchilla" and args.starts is not None:
        raise UsageError("--starts goes with --form chinchilla")
    if args.form == "power" and args.source is None:  # the power form over a sweep: its table of old
        from paretolab.analysis.fit import fit

        if args.x is None:
            raise UsageError("--form power needs --x (the axis, e.g. n, width, train_size)")
        y = args.y or "steps_to_success"
        store = open_store(args.store)
        _emit(fit(store, args.sweep, y=y, x=args.x, by=_split(args.by), n_boot=args.n_boot, success=args.success),
              args.format)
        if args.plot:
            from paretolab.analysis import plots

            _write_figure(args, args.plot, lambda: plots.plot_fit(store, args.sweep, y=y, x=args.x,
                                                                  by=(_split(args.by) or [None])[0],
                                                                  success=args.success, n_boot=args.n_boot))
        return 0
    if args.at and args.points:
        raise UsageError("--at and --points print different tables; give one")
    at = _points_at(args.at, args.form) if args.at else None
    report = _fit_report(args, args.form)
    table = report.predict(at) if at else report.points() if args.points else report.parameters()
    _emit(table, args.format)
    if at and (outside := sum(table.column("extrapolated").to_pylist())):
        _say(_console(stderr=True), f"warning: {outside} of {len(table)} predictions lie outside the data fitted: "
                                    "extrapolations, whose bands assume the form holds there")
    _fit_notes(args, report)
    if args.plot:
        from paretolab.analysis import scaling_plots

        _write_figure(args, args.plot, lambda: scaling_plots.plot_report(report))
    return 0


def _points_at(text: str, form: str) -> list:
    """`--at`: values of x, or N:D pairs for chinchilla."""
    try:
        if form == "chinchilla":
            return [tuple(float(v) for v in item.split(":")) for item in _split(text) or []]
        return [float(v) for v in _split(text) or []]
    except ValueError:
        want = "N:D pairs, e.g. 1e9:2e10,1e10:2e11" if form == "chinchilla" else "numbers, e.g. 256,512"
        raise UsageError(f"--at {text!r}: comma-separated {want}") from None


def _optimal(args) -> int:
    _fit_source(args)
    try:
        budgets = [float(b) for b in _split(args.budgets) or []]
    except ValueError:
        raise UsageError(f"--budgets {args.budgets!r}: comma-separated numbers of FLOPs, e.g. 1e18,1e19") from None
    report = _fit_report(args, "chinchilla")
    _emit(report.optimal(budgets), args.format)
    _fit_notes(args, report)
    if args.plot:
        from paretolab.analysis import scaling_plots

        _write_figure(args, args.plot, lambda: scaling_plots.plot_optimal(report, budgets))
    return 0


def _fit_source(args) -> None:
    if (args.sweep is None) == (args.source is None):
        raise UsageError(f"paretolab {args.command}: give --sweep NAME (a sweep of the store) or --from FILE (a table), "
                         "one of them")


def _fit_report(args, form: str):
    """The `FitReport` of `form` over the sweep or the table the arguments name."""
    from paretolab.analysis.scaling import fit_sweep, fit_table
    from paretolab.api import open_store

    if args.source is not None:
        columns = {"x": args.x, "y": args.y, "n": args.n, "d": args.d, "event": args.event}
        return fit_table(args.source, form, columns, by=_split(args.by), breaks=getattr(args, "breaks", 1),
                         n_boot=args.n_boot, seed=args.seed, starts=args.starts)
    if args.event:
        raise UsageError("--event names a column of a --from table; a sweep's trials say themselves whether they succeeded")
    return fit_sweep(open_store(args.store), args.sweep, form, x=args.x, y=args.y, n=args.n, d=args.d,
                     by=_split(args.by), breaks=getattr(args, "breaks", 1), n_boot=args.n_boot, seed=args.seed,
                     success=args.success, starts=args.starts)


def _fit_notes(args, report) -> None:
    """The goodness of fit (table format only) and the warnings (stderr), after the result."""
    if args.format == "table":
        _print_table(report.goodness())
    err = _console(stderr=True)
    for warning in report.warnings():
        _say(err, f"warning: {warning}")


def _plot(args) -> int:
    from paretolab.api import open_store

    store = open_store(args.store)
    _write_figure(args, args.out, lambda: _figure(args, store), say=True)
    return 0


def _write_figure(args, out: str, make, say: bool = False) -> None:
    """Draw `make()` in the style and size asked for, write it to `out` (and its numbers to --data),
    and, with `say`, print where (an analysis's --plot keeps its stdout for its table)."""
    from paretolab.analysis import figure, plots

    size = figure.parse_size(args.size) if args.size else None
    with figure.style(args.style, size):
        wrote = plots.save(make(), out, data_path=args.data)
    if say:
        _console().print(printable(f"wrote {wrote}" + (f" and {args.data}" if args.data else "")), markup=False)


def _figure(args, store):
    """The figure `paretolab plot KIND` asks for."""
    from paretolab.analysis import plots

    s, ok, by, facet = args.sweep, args.success, _split(args.by), args.facet
    if args.kind == "frontier":
        return plots.plot_frontier(store, s, x=args.x, y=args.y, by=by, success=ok, facet=facet)
    if args.kind == "phase":
        return plots.plot_phase(store, s, x=args.x, y=args.y, by=by, success=ok, facet=facet)
    if args.kind == "curves":
        if args.y and args.metric and args.y != args.metric:
            raise UsageError(f"plot curves: --y {args.y} and --metric {args.metric} name two metrics; give one")
        return plots.plot_curves(store, s, metric=args.metric or args.y, trial_ids=_split(args.trials),
                                 x=args.x or "step", by=by, facet=facet)
    if args.kind == "luck":
        if args.x:
            raise UsageError("plot luck is drawn against k, the seeds run in parallel; --x does not apply "
                             "(--y chooses the cost, --by the lines, --facet the panels)")
        return plots.plot_luck(store, s, cost=args.y or "steps_to_success", by=by, success=ok, facet=facet)
    if not args.x:
        from paretolab.analysis.cells import numeric_axes

        with _sweep(store, s) as (con, info, _):
            axes = ", ".join(numeric_axes(con, info, positive=True)) or "none"
        raise UsageError(f"plot fit needs --x AXIS (numeric axes of the sweep with values > 0: {axes})")
    return plots.plot_fit(store, s, y=args.y or "steps_to_success", x=args.x, by=by, success=ok, facet=facet)


def _sweep(store, sweep: str, success: str | None = None):
    """`cells.open_sweep`: a connection of the sweep, its `SweepInfo` and criterion."""
    from paretolab.analysis.cells import open_sweep

    return open_sweep(store, sweep, success)


def _report(args) -> int:
    from paretolab.analysis.report import report
    from paretolab.api import open_store

    _console().print(printable(f"wrote {report(open_store(args.store), args.sweep, args.out)}"), markup=False)
    return 0


def _plugins(args) -> int:
    import dataclasses

    import pyarrow as pa

    if args.command == "tasks":
        from paretolab.tasks.registry import tasks as registry
    else:
        from paretolab.models.registry import models as registry
    rows = []
    for name, cls in sorted(registry().items()):
        row = {args.command[:-1]: name,
               "parameters (defaults)": ", ".join(f"{f.name}={json.dumps(f.default)}" for f in dataclasses.fields(cls.Args))}
        if args.command == "tasks":
            row |= {"inputs": cls.io(cls.Args()).kind, "losses": ", ".join(cls.losses), "metrics": ", ".join(cls.metrics)}
        else:
            from paretolab.models.base import PackableModel

            row |= {"inputs": ", ".join(cls.accepts), "packable": issubclass(cls, PackableModel)}
        rows.append(row)
    _emit(pa.Table.from_pylist(rows), args.format)
    return 0


def _schema(args) -> int:
    from pathlib import Path

    from paretolab import spec_schema
    from paretolab.vocabulary.errors import shown

    text = spec_schema.render(spec_schema.schema())
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as e:
        raise UsageError(f"schema: cannot write {shown(args.output)}: {e.strerror or e}; pass --output a file "
                         "you can write") from None
    _console().print(printable(f"wrote {args.output}"), markup=False)
    return 0


COMMANDS = {"tasks": _plugins, "models": _plugins, "frontier": _frontier, "cells": _cells, "luck": _luck, "phases": _phases, "fit": _fit, "plot": _plot,
            "report": _report, "run": _run, "status": _status, "query": _query, "sweeps": _sweeps, "compact": _compact,
            "export": _export, "doctor": _doctor, "schema": _schema, "serve": _serve, "optimal": _optimal}

if __name__ == "__main__":
    sys.exit(main())

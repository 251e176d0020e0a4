"""One self-contained HTML page about a sweep: counts and totals, the versions, the cells, frontier,
phase diagram and boundary, luck, learning curves, the power-law fit, failures and the spec.

Plots are embedded as PNG data URIs; the page loads nothing else and uses the window's full width.
Every section is read again from the store each time the page is made, so a report of a running
sweep shows what has ended so far (a section that cannot be computed yet says why).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pyarrow as pa

from paretolab.analysis import plots
from paretolab.analysis.cells import numeric_axes, open_sweep
from paretolab.analysis.status import status
from paretolab.store import Store
from paretolab.store.store import columns
from paretolab.vocabulary.errors import ParetolabError, StoreError
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN

VERSIONS = ("paretolab", "torch", "ray", "duckdb", "pyarrow", "matplotlib")
REPORT_BOOT = 200  # bootstrap resamples of the report's fit: enough for a 95% interval to two digits

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f3f3f3; position: sticky; top: 0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; height: auto; } .scroll { overflow-x: auto; max-height: 32em; overflow-y: auto; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; } .row > * { flex: 1 1 40em; min-width: 0; }
.note { color: #666; font-size: 0.9em; }
"""

# Marks the page once every embedded plot has decoded, so a browser test can check it.
CHECK = """
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img.plot')];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  document.body.dataset.plotsLoaded = String(ok);
  document.body.dataset.plotsTotal = String(imgs.length);
});
"""


@dataclass(frozen=True)
class Totals:
    """What a sweep's ended trials used: their wall time summed, that time times the CPU cores and
    GPUs of a worker slot, and their training FLOPs (6 x parameters x samples; None when no trial
    records its size)."""

    trial_s: float
    cpu_s: float | None
    gpu_s: float | None
    flops: float | None


def report(store: Store, sweep: str, out: str | Path, max_rows: int = 50) -> Path:
    """Write the HTML report of `sweep` to `out` and return its path.

    Raises:
        StoreError: unknown sweep, or `out` cannot be written.
    """
    with open_sweep(store, sweep) as (con, info, _):
        spec = con.execute("SELECT spec FROM sweeps WHERE sweep = ?", [sweep]).fetchall()[0][0]
        failures = con.sql("SELECT error, count(*) AS trials, min(trial_id) AS example FROM trials "
                           "WHERE status = 'failed' GROUP BY error ORDER BY trials DESC").to_arrow_table()
        totals = _totals(con, spec)
        boundary_axis = next(iter(numeric_axes(con, info, positive=True)), None)
    st = status(store, sweep)[0]
    parts = [f"<h1>{_e(sweep)}</h1>",
             f"<p class=note>{st.total} trials: {st.ended} ended ({st.succeeded} succeeded, {st.failed} failed, "
             f"{st.diverged} diverged), {st.remaining} not ended ({st.started} with curves but no result). "
             f"Success: <code>{_e(info.success.metric)} {_e(info.success.op)} {info.success.value:g}</code>. "
             f"Axes: {_e(', '.join(info.axes) or 'none')}.</p>"]
    if not st.succeeded:
        why = ("No trial has ended yet</b>: the plots below fill in as trials end" if not st.ended else
               "No trial has succeeded yet</b>: the frontier and luck fill in once one does")
        parts.append(f"<p class=note><b>{why}; run <code>paretolab report</code> again to update this page.</p>")
    parts.append("<div class=row><div><h2>Totals</h2>" + _totals_table(st, totals) + "</div>"
                 "<div><h2>Versions</h2>" + _versions() + "</div></div>")
    parts += _section("Cells", None, lambda: _cells_table(store, sweep))
    parts += _section("Frontier", lambda: plots.plot_frontier(store, sweep), lambda: _frontier_table(store, sweep, max_rows))
    parts += _section("Phase diagram", lambda: plots.plot_phase(store, sweep),
                      lambda: _boundary_table(store, sweep, boundary_axis, max_rows))
    parts += _section("Luck", lambda: plots.plot_luck(store, sweep))
    parts += _section("Learning curves", lambda: plots.plot_curves(store, sweep))
    parts += _section("Power-law fit", lambda: plots.plot_fit(store, sweep, n_boot=REPORT_BOOT),
                      lambda: _fit_table(store, sweep, boundary_axis, max_rows))
    parts.append("<h2>Failures</h2>" + (_table(failures, max_rows) if failures.num_rows else "<p>None.</p>"))
    parts.append(f"<h2>Spec</h2><pre>{_e(spec or '')}</pre>")
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(sweep)}: paretolab report</title>"
            f"<meta name=viewport content='width=device-width'><style>{STYLE}</style></head>"
            f"<body>{''.join(parts)}<script>{CHECK}</script></body></html>")
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise StoreError(f"cannot write the report to {out}: {e.strerror}") from None
    return out


def _section(title: str, make_plot=None, make_table=None) -> list[str]:
    """A section: its plot and its table side by side (each says why when it cannot be made yet)."""
    out = []
    for make in (make_plot, make_table):
        if make is None:
            continue
        try:
            out.append(f'<img class=plot alt="{title}" src="data:image/png;base64,{_png(make())}">'
                       if make is make_plot else f"<div class=scroll>{make()}</div>")
        except ParetolabError as e:
            out.append(f"<p class=note>Not available: {_e(str(e))}</p>")
    return [f"<h2>{title}</h2><div class=row>" + "".join(f"<div>{o}</div>" for o in out) + "</div>"]


def _totals(con, spec: str | None) -> Totals:
    have = columns(con, "trials")
    sizes = (["flops_per_sample"] if "flops_per_sample" in have else []) + \
        ([f"{FLOPS_PER_PARAM_PER_TOKEN}::DOUBLE * n_params"] if "n_params" in have else [])
    flops = f"sum(coalesce({', '.join(sizes)}) * samples)" if sizes and "samples" in have else "NULL"
    seconds, total_flops = con.execute(f"SELECT coalesce(sum(wall_s), 0), {flops} FROM trials "
                                       "WHERE status IS NOT NULL").fetchall()[0]
    cpu, gpu = _slot(spec)
    return Totals(float(seconds), seconds * cpu if cpu is not None else None,
                  seconds * gpu if gpu is not None else None, float(total_flops) if total_flops is not None else None)


def _slot(spec: str | None) -> tuple[float | None, float | None]:
    """The CPU cores and GPUs of one worker slot as the spec gives them (`resources`, default 1 CPU,
    no GPU); (None, None) for a spec that is not YAML (a Python file's text)."""
    import yaml

    try:
        raw = yaml.safe_load(spec or "")
    except yaml.YAMLError:
        return None, None
    if not isinstance(raw, dict):
        return None, None
    resources = raw.get("resources") if isinstance(raw.get("resources"), dict) else {}
    return float(resources.get("cpu", 1.0)), float(resources.get("gpu", 0.0))


def _totals_table(st, t: Totals) -> str:
    rows = [("trials", f"{st.total} ({st.ended} ended, {st.succeeded} succeeded, {st.failed} failed, "
                       f"{st.diverged} diverged, {st.pruned} pruned)"),
            ("trial wall time", _seconds(t.trial_s)),
            ("CPU core-seconds", _seconds(t.cpu_s) if t.cpu_s is not None else "not known (spec is not YAML)"),
            ("GPU-seconds", _seconds(t.gpu_s) if t.gpu_s is not None else "not known (spec is not YAML)"),
            ("training FLOPs", f"{t.flops:.3g}" if t.flops is not None else "not recorded (no trial records its size)")]
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return (f"<table>{body}</table><p class=note>Wall time summed over the ended trials (trials trained together "
            "in one pack each count the pack's time); core- and GPU-seconds are that times a worker slot's "
            "<code>resources</code>. FLOPs: 6 x parameters x samples seen.</p>")


def _seconds(s: float) -> str:
    return f"{s:,.1f} s" + (f" ({s / 3600:.2f} h)" if s >= 3600 else "")


def _versions() -> str:
    """The versions installed where this report is made (read from package metadata, nothing imported)."""
    rows = []
    for name in VERSIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append(f"<tr><th>{_e(name)}</th><td>{_e(version)}</td></tr>")
    return f"<table>{''.join(rows)}</table><p class=note>Installed where this page was made.</p>"


def _cells_table(store: Store, sweep: str) -> str:
    from paretolab.analysis.cells import cells

    table = cells(store, sweep)
    if not table.num_rows:
        return "<p class=note>No trial has ended yet.</p>"
    return _table(table, 1_000)


def _frontier_table(store: Store, sweep: str, max_rows: int) -> str:
    from paretolab.analysis.frontier import default_objectives, frontier

    objectives = default_objectives(store, sweep)
    table = frontier(store, sweep, objectives=objectives)
    over = ", ".join(f"{name} ({direction})" for name, direction in objectives)
    if not table.num_rows:
        return f"<p class=note>No cell is on the frontier over {_e(over)} yet (no cell has p_success >= 0.5).</p>"
    return f"<h3>Frontier cells over {_e(over)}</h3>" + _table(table, max_rows)


def _boundary_table(store: Store, sweep: str, axis: str | None, max_rows: int) -> str:
    from paretolab.analysis.phases import phase_boundary

    if axis is None:
        return "<p class=note>No phase boundary: the sweep has no numeric axis with values &gt; 0.</p>"
    table = phase_boundary(store, sweep, axis)
    if not table.num_rows:
        return f"<p class=note>No phase boundary along {_e(axis)} yet: no trial has ended.</p>"
    return (f"<h3>Where P(success) first reaches 1/2 along {_e(axis)}</h3>" + _table(table, max_rows))


def _fit_table(store: Store, sweep: str, axis: str | None, max_rows: int) -> str:
    from paretolab.analysis.fit import fit

    table = fit(store, sweep, x=axis, n_boot=REPORT_BOOT)  # no axis: fit says which it needs
    return (f"<h3>steps_to_success = a &middot; {_e(axis)}<sup>b</sup> (censored trials left out: "
            "see censored_fraction)</h3>" + _table(table.drop(["censoring"]), max_rows))


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plots._plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(t: pa.Table, max_rows: int) -> str:
    rows = t.slice(0, max_rows).to_pylist()
    head = "".join(f"<th>{_e(c)}</th>" for c in t.column_names)
    body = "".join("<tr>" + "".join(_cell(v) for v in r.values()) + "</tr>" for r in rows)
    more = f"<p class=note>{t.num_rows - max_rows} more rows not shown.</p>" if t.num_rows > max_rows else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _cell(v) -> str:
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    return f"<td{' class=num' if numeric else ''}>{_e(_fmt(v))}</td>"


def _fmt(v) -> str:
    if v is None:
        return "NULL"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _e(s: str) -> str:
    return html.escape(str(s))

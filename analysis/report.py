"""One self-contained HTML page about a sweep: spec, counts, frontier, phase diagram, luck,
learning curves and failures. Plots are embedded as PNG data URIs; the page loads nothing else."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import pyarrow as pa

from paretolab.analysis import plots
from paretolab.analysis.cells import sweep_info
from paretolab.analysis.status import status
from paretolab.store import Store
from paretolab.vocabulary.errors import ParetolabError, StoreError

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { border: 1px solid #ccc; padding: 2px 6px; }
th { background: #f3f3f3; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
img { max-width: 100%; } .grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
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


def report(store: Store, sweep: str, out: str | Path, max_rows: int = 50) -> Path:
    """Write the HTML report of `sweep` to `out` and return its path.

    Raises:
        StoreError: unknown sweep, or `out` cannot be written.
    """
    con = store.connect(sweep)
    try:
        info = sweep_info(con, sweep)
        spec = con.execute("SELECT spec FROM sweeps WHERE sweep = ?", [sweep]).fetchall()[0][0]
        failures = con.sql("SELECT error, count(*) AS trials, min(trial_id) AS example FROM trials "
                           "WHERE status = 'failed' GROUP BY error ORDER BY trials DESC").to_arrow_table()
    finally:
        con.close()
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
    parts += _section("Frontier", lambda: plots.plot_frontier(store, sweep), lambda: _frontier_table(store, sweep, max_rows))
    parts += _section("Phase diagram", lambda: plots.plot_phase(store, sweep))
    parts += _section("Luck", lambda: plots.plot_luck(store, sweep))
    parts += _section("Learning curves", lambda: plots.plot_curves(store, sweep))
    parts.append("<h2>Failures</h2>" + (_table(failures, max_rows) if failures.num_rows else "<p>None.</p>"))
    parts.append(f"<h2>Spec</h2><pre>{_e(spec or '')}</pre>")
    page = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(sweep)}: paretolab report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}<script>{CHECK}</script></body></html>")
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise StoreError(f"cannot write the report to {out}: {e.strerror}") from None
    return out


def _section(title: str, make_plot, make_table=None) -> list[str]:
    out = [f"<h2>{title}</h2>"]
    try:
        out.append(f'<img class=plot alt="{title}" src="data:image/png;base64,{_png(make_plot())}">')
        if make_table is not None:
            out.append(make_table())
    except ParetolabError as e:
        out.append(f"<p class=note>Not available: {_e(str(e))}</p>")
    return out


def _frontier_table(store: Store, sweep: str, max_rows: int) -> str:
    from paretolab.analysis.frontier import default_objectives, frontier

    objectives = default_objectives(store, sweep)
    table = frontier(store, sweep, objectives=objectives)
    over = ", ".join(f"{name} ({direction})" for name, direction in objectives)
    if not table.num_rows:
        return f"<p class=note>No cell is on the frontier over {_e(over)} yet (no cell has p_success >= 0.5).</p>"
    return f"<h3>Frontier cells over {_e(over)}</h3>" + _table(table, max_rows)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plots._plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _table(t: pa.Table, max_rows: int) -> str:
    rows = t.slice(0, max_rows).to_pylist()
    head = "".join(f"<th>{_e(c)}</th>" for c in t.column_names)
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(v))}</td>" for v in r.values()) + "</tr>" for r in rows)
    more = f"<p class=note>{t.num_rows - max_rows} more rows not shown.</p>" if t.num_rows > max_rows else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _fmt(v) -> str:
    if v is None:
        return "NULL"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _e(s: str) -> str:
    return html.escape(str(s))

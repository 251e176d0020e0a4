"""The page's figures as SVG text: the analysis's own figures (`analysis.plots`, the same as
`paretolab plot` draws), and the curves drawn from the bands `data.curve_bands` aggregates.

matplotlib's pyplot is not thread-safe, and handlers run on a thread pool: one figure is made at a
time (`_DRAWING`); the tables behind them are computed outside that lock where they are our own.
"""

from __future__ import annotations

import io
import threading

from paretolab.analysis import figure, plots
from paretolab.analysis.figure import OKABE_ITO, empty, name
from paretolab.store import Store
from paretolab.serve import data

_DRAWING = threading.Lock()
CURVE_LABELS = {"step": "training step", "samples": "samples seen", "flops": "training FLOPs"}


def svg(make) -> bytes:
    """The figure `make()` returns, as SVG (text kept as text, the screen style)."""
    with _DRAWING, figure.style("screen"):
        fig = make()
        out = io.BytesIO()
        try:
            fig.savefig(out, format="svg", bbox_inches="tight")
        finally:
            figure._plt().close(fig)
    return out.getvalue()


def phase(store: Store, sweep, x: str | None, y: str | None) -> bytes:
    return svg(lambda: plots.plot_phase(store, sweep, x=x, y=y))


def frontier(store: Store, sweep, x: str | None, by: str | None) -> bytes:
    return svg(lambda: plots.plot_frontier(store, sweep, x=x, by=[by] if by else ()))


def luck(store: Store, sweep, by: str | None) -> bytes:
    return svg(lambda: plots.plot_luck(store, sweep, by=[by] if by else ()))


def curves(store: Store, sweep, by: str | None, x: str, metric: str | None) -> bytes:
    bands = data.curve_bands(store, sweep, by=by, x=x, metric=metric)
    title = f"{sweep if isinstance(sweep, str) else ','.join(sweep)}: {bands['metric']}"
    return svg(lambda: _bands(bands, title))


def _bands(bands: dict, title: str):
    keys, rows, n = bands["keys"], bands["rows"], len(bands["keys"])
    fig, (ax,) = figure.panels(1)
    ax.set_title(title)
    ax.set(xlabel=CURVE_LABELS[bands["x"]], ylabel=f"{bands['metric']} (median over seeds)")
    if not rows:
        return empty(fig, ax, bands["why"] or "nothing to draw")
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple(r[:n]), []).append(r[n:])
    colors = figure.colors(len(groups)) if len(groups) > 1 else OKABE_ITO[:1]
    xs = [r[n] for r in rows]
    for color, (key, points) in zip(colors, groups.items()):
        x, med, q1, q3 = ([p[i] for p in points] for i in range(4))
        ax.plot(x, med, color=color, label=name(key, keys) if keys else None)
        ax.fill_between(x, q1, q3, color=color, alpha=0.2, lw=0)
    figure.scale(ax, "x", [v for v in xs if v is not None])
    ax.text(0.99, 0.99, "band: quartiles over seeds; drawn while half of a group's trials report",
            transform=ax.transAxes, ha="right", va="top", fontsize="x-small", color="gray")
    if keys:
        figure.legend(ax, len(groups), outside=len(groups) > 6)
    return fig


def trial_curve(store: Store, trial_id: str) -> bytes:
    curve = data.trial_curve(store, trial_id)
    return svg(lambda: _trial(curve, trial_id))


def _trial(curve: dict, trial_id: str):
    cols, rows = curve["columns"], curve["rows"]
    metrics = [c for c in cols if c not in ("step", "samples")]
    losses = [m for m in metrics if "loss" in m]
    others = [m for m in metrics if m not in losses]
    panels = [p for p in (others, losses) if p] or [[]]
    fig, axs = figure.panels(len(panels), columns=len(panels))
    if not rows:
        axs[0].set_title(trial_id)
        return empty(fig, axs[0], "no curve row yet")
    step = [r[cols.index("step")] for r in rows]
    for ax, names in zip(axs, panels):
        for i, m in enumerate(names):
            ax.plot(step, [r[cols.index(m)] for r in rows], color=OKABE_ITO[i % len(OKABE_ITO)], label=m)
        ax.set(xlabel="training step", title=trial_id)
        figure.legend(ax, len(names))
    return fig

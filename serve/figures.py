"""The page's figures as SVG text: the analysis's own figures (`analysis.plots`, the same as
`paretolab plot` draws), and the curves drawn from the bands `data.curve_bands` aggregates.

A figure is made here (its tables computed in this process's database of the snapshot, its
artists placed) and drawn to SVG in a pool of other processes (`RENDERERS`): drawing, mostly
text layout, is pure Python, so figures drawn on a thread pool took turns on one core. On the
10^7-row benchmark store, drawing took 0.13-0.2 s per figure of the 0.25-0.4 s each took in all
(benchmarks/serve.py). matplotlib's global settings (the style) are not thread-safe, and handlers
run on a thread pool: one figure is made at a time (`_MAKING`), in the style it is drawn in,
unless the process keeps that style as its own (`screen_style_everywhere`, in `paretolab serve`).
"""

from __future__ import annotations

import atexit
import io
import multiprocessing
import os
import pickle
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from concurrent.futures.process import BrokenProcessPool

from paretolab.analysis import figure, plots
from paretolab.analysis.figure import OKABE_ITO, empty, name
from paretolab.store import Store
from paretolab.serve import data

_MAKING = threading.Lock()
_one_style = False  # the process's settings are the screen style's (`screen_style_everywhere`)
CURVE_LABELS = {"step": "training step", "samples": "samples seen", "flops": "training FLOPs"}
# Processes that draw figures: as many as the cores, up to 2 (a page shows 4 figures; the database
# queries of the other parts use the cores too). On one core, figures are drawn in this process.
RENDERERS = min(2, os.cpu_count() or 1)
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()


def start_renderers() -> None:
    """Start the processes that draw figures now (each imports matplotlib: 1-2 s), not on the
    first page's figures."""
    pool = _renderers()
    if pool is not None:
        for f in [pool.submit(_draw, None) for _ in range(RENDERERS)]:
            f.result()


def _renderers() -> ProcessPoolExecutor | None:
    global _pool
    if RENDERERS < 2:
        return None
    with _pool_lock:
        if _pool is None:
            # spawn: a fork would copy this process's threads' locks (DuckDB's, the server's) mid-use
            _pool = ProcessPoolExecutor(RENDERERS, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_exit_with_parent)
        return _pool


def _exit_with_parent() -> None:
    """In a renderer: end when the server's process ends, however it ends (a worker of a process
    pool otherwise waits for work forever once its parent is killed)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(0)), name="paretolab-renderer-parent", daemon=True).start()


def stop_renderers() -> None:
    """Stop the processes that draw figures (a later figure starts them again)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(stop_renderers)


def screen_style_everywhere() -> None:
    """Make the screen style this process's own matplotlib settings (the server's process, which
    draws nothing else): figures are then made on several threads at once, each one's tables
    computed while another's artists are placed. (matplotlib's settings are global: a figure made in
    a style while another thread restored other settings would be made in those; fonts are per
    thread in matplotlib.)"""
    global _one_style
    import matplotlib

    matplotlib.rcParams.update(figure.STYLES["screen"])
    _one_style = True


def svg(make) -> bytes:
    """The figure `make()` returns, as SVG (text kept as text, the screen style), drawn in one of
    the renderers (here where there are none, or where a renderer died: the pool starts again)."""
    with nullcontext() if _one_style else _MAKING, figure.style("screen"):
        made = pickle.dumps(make(), protocol=pickle.HIGHEST_PROTOCOL)
    pool = _renderers()
    if pool is not None:
        try:
            return pool.submit(_draw, made).result()
        except BrokenProcessPool:
            global _pool
            with _pool_lock:
                if _pool is pool:
                    _pool = None
            pool.shutdown(wait=False, cancel_futures=True)
    return _draw(made)


def _draw(made: bytes | None) -> bytes:
    """A pickled figure drawn as SVG in the screen style (None: a small one, which loads matplotlib
    and its fonts)."""
    with figure.style("screen"):
        if made is None:
            fig, (ax,) = figure.panels(1)
            ax.set_title("warm")
        else:
            fig = pickle.loads(made)
        out = io.BytesIO()
        # constrained layout already keeps every artist (outside legends too) inside the figure;
        # a tight box would lay the text out once more to trim a few pixels (12% of the drawing)
        fig.savefig(out, format="svg")
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

"""The page's figures as SVG text: the analysis's own figures (`analysis.plots`, the same as
`paretolab plot` draws), and the curves drawn from the bands `data.curve_bands` aggregates.

A figure's numbers are computed in the server's process, with DuckDB (`analysis.plot_numbers`,
`data.curve_bands`); the figure is made and drawn from them in a pool of other processes
(`RENDERERS`), which get the numbers (a few KB pickled) and return SVG. Making and drawing a
figure is pure Python (artists, text layout): in the server's process, figures made on its thread
pool took turns on one core with the queries of the page's other parts, and a made figure pickled
to a renderer was 5-35 times the bytes of its numbers (benchmark store: 0.2-0.3 MB against 9-43 KB). matplotlib's global settings (the style) are
not thread-safe: where a figure is drawn in the server's process (one core, or a renderer died),
one is drawn at a time (`_DRAWING`).
"""

from __future__ import annotations

import atexit
import hashlib
import io
import multiprocessing
import os
import pickle
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from paretolab.analysis import figure, plots
from paretolab.analysis.figure import OKABE_ITO, empty, name

_DRAWING = threading.Lock()
# Processes that draw figures: as many as the cores, up to 2 (a page shows 4 figures; the database
# queries of the other parts use the cores too). On one core, figures are drawn in this process.
RENDERERS = min(2, os.cpu_count() or 1)
_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
# Figures kept drawn, by what drew them and a digest of their numbers (`svg`): a page's figures,
# a few choices of axes each, for a few pages (an SVG here is about 0.1 MB).
DRAWN_KEPT = 64
_drawn: OrderedDict[tuple, bytes] = OrderedDict()
_drawn_lock = threading.Lock()


def start_renderers() -> None:
    """Start the processes that draw figures now (each imports matplotlib: 1-2 s), not on the
    first page's figures."""
    pool = _renderers()
    if pool is not None:
        for f in [pool.submit(_draw, None, None) for _ in range(RENDERERS)]:
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


def svg(draw: Callable, numbers) -> bytes:
    """The figure `draw(numbers)` makes, as SVG in the screen style (text kept as text), made and
    drawn in one of the renderers (here where there are none, or where a renderer died: the pool
    starts again). `draw` is a module-level function (a renderer imports it by name).

    The same numbers drawn the same way are drawn once (the last `DRAWN_KEPT`): a change of the
    store that leaves a figure's numbers as they were (curve rows of running trials, for the
    phase diagram, frontier and luck) draws nothing again."""
    key = (draw.__module__, draw.__qualname__, hashlib.blake2b(pickle.dumps(numbers, protocol=5)).digest())
    with _drawn_lock:
        if key in _drawn:
            _drawn.move_to_end(key)
            return _drawn[key]
    body = _render(draw, numbers)
    with _drawn_lock:
        _drawn[key] = body
        while len(_drawn) > DRAWN_KEPT:
            _drawn.popitem(last=False)
    return body


def _render(draw: Callable, numbers) -> bytes:
    pool = _renderers()
    if pool is not None:
        try:
            return pool.submit(_draw, draw, numbers).result()
        except BrokenProcessPool:
            global _pool
            with _pool_lock:
                if _pool is pool:
                    _pool = None
            pool.shutdown(wait=False, cancel_futures=True)
    with _DRAWING:
        return _draw(draw, numbers)


def _draw(draw: Callable | None, numbers) -> bytes:
    """`draw(numbers)` drawn as SVG in the screen style (None: a small figure, which loads
    matplotlib and its fonts)."""
    import matplotlib

    # the ids of an SVG's clip paths and markers from a fixed salt, not a random one: the same
    # numbers drawn again give the same bytes
    with figure.style("screen"), matplotlib.rc_context({"svg.hashsalt": "paretolab"}):
        if draw is None:
            fig, (ax,) = figure.panels(1)
            ax.set_title("warm")
        else:
            fig = draw(numbers)
        out = io.BytesIO()
        # constrained layout already keeps every artist (outside legends too) inside the figure;
        # a tight box would lay the text out once more to trim a few pixels (12% of the drawing)
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def analysis_figure(numbers) -> object:
    """The analysis's figure of `numbers` (`analysis.plots.draw`)."""
    return plots.draw(numbers)


def bands_figure(bands: dict):
    """The curves of `data.curve_bands`: a median per group with a band over its seeds' quartiles."""
    keys, rows, n = bands["keys"], bands["rows"], len(bands["keys"])
    sweep = bands["sweep"]
    title = f"{sweep if isinstance(sweep, str) else ','.join(sweep)}: {bands['metric']}"
    fig, (ax,) = figure.panels(1)
    ax.set_title(title)
    ax.set(xlabel=plots.CURVE_X[bands["x"]], ylabel=f"{bands['metric']} (median over seeds)")
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


def trial_figure(curve: dict):
    """One trial's curves (`data.trial_curve`): a panel of its losses, one of its other metrics."""
    cols, rows, trial_id = curve["columns"], curve["rows"], curve["trial_id"]
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

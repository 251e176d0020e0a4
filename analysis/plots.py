"""Plots of a sweep: frontier, phase diagram, learning curves, luck and scaling fits.

Each `plot_*` function reads the store through the analysis functions and returns a matplotlib
Figure with the numbers it draws attached (`figure.data`); `save(fig, path)` writes PNG, SVG or
PDF by the file's suffix (and the numbers as CSV with `data_path`). Styles and sizes: `figure.style`.

What a plot draws by default comes from the sweep (its axes in `SweepInfo.leading_axes` order, its
success criterion, the metrics it reported), so every plot draws any sweep: the frontier over its
first numeric axis with one line per combination of its other axes, the phase diagram over its
first two axes (a success curve over one axis), the curves of its success metric grouped by cell,
luck per cell. `x`, `y` and `by` choose otherwise; `facet` draws one panel per value of an axis.
Axes are labelled by `labels.sweep_labels`. A sweep with no trial ended or succeeded yet gives a
figure that says so, and an axis is logarithmic only when every value on it is positive and they
span a factor of `figure.LOG_SPAN` or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyarrow as pa

from paretolab.analysis import figure
from paretolab.analysis.cells import COMPARED, check_metric, columns, ident, open_sweep, reported_metrics
from paretolab.analysis.figure import (NO_SUCCESS, NO_TRIAL, OKABE_ITO, _plt, attach, empty, groups,  # noqa: F401
                                       name, save, sorted_values, subtitle, tick)
from paretolab.analysis.labels import COST_LABELS, Labels, sweep_labels
from paretolab.analysis.plot_numbers import (AxisNames, FrontierNumbers, LuckNumbers, PhaseNumbers, checked_facet,
                                             frontier_numbers, lines_by, luck_numbers, phase_numbers)
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN

__all__ = ["plot_frontier", "plot_phase", "plot_curves", "plot_luck", "plot_fit", "draw", "save", "label"]

CURVE_X = {"step": "training step", "samples": "samples seen", "flops": "training FLOPs"}
CURVE_GRID = 200  # points a band of curves over samples or FLOPs is drawn at (interpolated per trial)


def label(name_: str) -> str:
    """The axis label of a column without a sweep: a cost in words, anything else by its name."""
    return COST_LABELS.get(name_, name_)


def draw(numbers: FrontierNumbers | PhaseNumbers | LuckNumbers):
    """The figure of a plot from its numbers (`plot_numbers`): what `paretolab serve` draws in its
    drawing processes, the same figure `plot_frontier`, `plot_phase` or `plot_luck` returns."""
    drawers = {FrontierNumbers: draw_frontier, PhaseNumbers: draw_phase, LuckNumbers: draw_luck}
    return drawers[type(numbers)](numbers)


def plot_frontier(store: Store, sweep: str, x: str | None = None, y: str | None = None, by: AxisNames = None,
                  min_success_prob: float = 0.5, success: str | None = None, facet: str | None = None):
    """Every cell at its median cost against `x`, one line per combination of `by`, the frontier
    as a staircase.

    Like Fig. 1-2 of Edelman et al. (2023) in the (data, compute) plane: a filled marker is a cell
    whose success probability is at least `min_success_prob` (the cells the frontier is drawn
    from), a hollow one a cell below it, an x on the `no success` row one whose seeds never
    succeeded; the vertical bars span the quartiles of the cost over the seeds that succeeded.
    Cells whose `x` is NULL (online training for train_size) sit in a column of their own past an
    axis break. The staircase bounds the region the frontier cells dominate. Defaults: x the
    sweep's first numeric axis, y its cost (`cells.default_cost`; a cost is drawn as its cells'
    median, `median_<cost>` in the figure's data), by its other axes (a
    comma-separated string is split; () draws one line); `facet`: one panel (and frontier) per value.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, objective or criterion.
    """
    return draw_frontier(frontier_numbers(store, sweep, x=x, y=y, by=by, min_success_prob=min_success_prob,
                                          success=success, facet=facet))


def draw_frontier(n: FrontierNumbers):
    """The figure of `plot_frontier` from its numbers (no store read)."""
    title = f"{n.sweep}: frontier"
    if n.x is None:
        fig, (ax,) = figure.panels(1)
        ax.set_title(title)
        return empty(fig, ax, f"no numeric axis to draw a frontier over\n(axes: {', '.join(n.axes) or 'none'})")
    cells, x, y, by, facet, stat = n.cells, n.x, n.y, n.by, n.facet, n.cost_column
    panels = groups(cells, (facet,)) if facet else [((), cells)]
    fig, axs = figure.panels(len(panels), sharex=True, sharey=True)
    attach(fig, cells)
    priced = [r for r in cells if r[stat] is not None]
    if not priced:
        _titles(fig, axs, title, [], None)
        return empty(fig, axs[0], _why_empty(cells) or f"no cell has a {stat}")
    plane = _Plane(cells, priced, x, y, stat)
    color = dict(zip([k for k, _ in groups(cells, by)], figure.colors(len(groups(cells, by)))))
    for ax, (_, rows) in zip(axs, panels):
        _frontier_panel(ax, rows, plane, by, color, n.stairs, n.min_success_prob)
    _titles(fig, axs, title, [name(k, (facet,)) for k, _ in panels] if facet else [],
            f"filled: P(success) >= {n.min_success_prob:g}; bars: quartiles over seeds")
    _label_outer(axs, n.labels(x), f"median {n.labels(y)}")
    _frontier_legend(axs[-1], by, n.min_success_prob, plane)
    return fig


class _Plane:
    """Where the cells of a frontier plot go: grid values on x (NULL past a break), costs on y (the
    cells' column `stat`, `y`'s median; no success on a row above a break), each axis log when its
    values span `figure.LOG_SPAN`."""

    def __init__(self, cells: list[dict], priced: list[dict], x: str, y: str, stat: str):
        self.x, self.y, self.stat = x, y, stat
        self.xs = sorted({r[x] for r in cells if r[x] is not None})
        self.log_x = figure.is_log(self.xs)
        self.null_x = figure.beyond(self.xs, self.log_x) if any(r[x] is None for r in cells) else None
        ys = [v for r in priced for v in (r[stat], r[f"{y}_q1"], r[f"{y}_q3"]) if v is not None]
        self.log_y = figure.is_log(ys)
        self.top = max(ys)
        self.null_y = figure.beyond(ys, self.log_y) if any(r[stat] is None for r in cells) else None

    def at(self, r: dict) -> float:
        return r[self.x] if r[self.x] is not None else self.null_x

    def cost(self, r: dict) -> float:
        return r[self.stat] if r[self.stat] is not None else self.null_y


def _frontier_panel(ax, rows: list[dict], plane: _Plane, by: tuple[str, ...], color: dict, stairs: tuple[str, ...],
                    min_success_prob: float):
    x, y, stat = plane.x, plane.y, plane.stat
    for key, group in groups(rows, by):
        c = color[key]
        group = sorted(group, key=lambda r: (r[x] is None, r[x]))
        priced = [r for r in group if r[stat] is not None]
        ax.plot([plane.at(r) for r in priced], [r[stat] for r in priced], "o-", color=c, lw=1,
                label=name(key, by) if by else None)
        below = [r for r in priced if r["p_success"] < min_success_prob]
        ax.scatter([plane.at(r) for r in below], [r[stat] for r in below], s=14, facecolors="white", edgecolors=c,
                   linewidths=1, zorder=3)
        spread = [r for r in priced if r[f"{y}_q1"] is not None]
        ax.vlines([plane.at(r) for r in spread], [r[f"{y}_q1"] for r in spread], [r[f"{y}_q3"] for r in spread],
                  colors=c, lw=1, alpha=0.6)
        never = [r for r in group if r[stat] is None]
        ax.scatter([plane.at(r) for r in never], [plane.null_y] * len(never), marker="x", s=18, color=c, lw=1)
    for i, (key, group) in enumerate(groups([r for r in rows if r["on_frontier"]], stairs)):
        front = sorted(group, key=lambda r: (r[x] is None, r[x]))
        ax.plot([plane.at(r) for r in front], [r[stat] for r in front], drawstyle="steps-post", color="black", lw=1,
                ls=("-", "--", ":", "-.")[i % 4], marker="o", ms=9, mfc="none", mec="black", mew=1,
                label="frontier" + (f" ({name(key, stairs)})" if stairs else ""))
    if plane.log_x:
        figure.log(ax, "x")
    if plane.log_y:
        figure.log(ax, "y")
    else:
        figure.plain_numbers(ax, "y")
    figure.grid_ticks(ax, plane.xs, plane.null_x, x)
    if plane.null_x is not None and plane.xs:
        figure.axis_break(ax, figure.between(max(plane.xs), plane.null_x, plane.log_x), "x")
    if plane.null_y is not None:
        figure.axis_break(ax, figure.between(plane.top, plane.null_y, plane.log_y), "y")
        ax.text(0.02, plane.null_y, "no success", transform=ax.get_yaxis_transform(), va="bottom",
                fontsize="x-small", color="0.35")
    ax.grid(True, which="major", alpha=0.3)


def _frontier_legend(ax, by: tuple[str, ...], min_success_prob: float, plane: _Plane) -> None:
    from matplotlib.lines import Line2D

    handles, names = ax.get_legend_handles_labels()
    keys = [Line2D([], [], ls="", marker="o", mfc="white", mec="0.3", label=f"P(success) < {min_success_prob:g}")]
    if plane.null_y is not None:
        keys.append(Line2D([], [], ls="", marker="x", color="0.3", label="no success"))
    figure.legend(ax, len(handles) + len(keys), handles=handles + keys, labels=names + [k.get_label() for k in keys])


def plot_phase(store: Store, sweep: str, x: str | None = None, y: str | None = None, success: str | None = None,
               by: AxisNames = None, facet: str | None = None):
    """Success probability over two axes as a heat map with the p = 1/2 contour, each cell's
    successes / seeds written in it.

    Defaults: the sweep's first two axes (`leading_axes`); in a comparison, one panel per sweep.
    Cells are pooled over every other axis. NULL values of an axis (e.g. online training) get their
    own column or row, labelled. With one axis (or `by` instead of `y`), the success probability
    along `x` with its 95% Wilson interval, one line per combination of `by`; with none, a figure
    that says so. `facet`: one panel per value of that axis.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis or criterion, or both `y` and `by`.
    """
    return draw_phase(phase_numbers(store, sweep, x=x, y=y, success=success, by=by, facet=facet))


def draw_phase(n: PhaseNumbers):
    """The figure of `plot_phase` from its numbers (no store read)."""
    table, x, y, facet, sweep = n.cells, n.x, n.y, n.facet, n.sweep
    panels = groups(table, (facet,)) if facet and table else [((), table)]
    fig, axs = figure.panels(len(panels), sharey=y is None)
    attach(fig, table)
    names = [name(k, (facet,)) for k, _ in panels] if facet else []
    if x is None:
        _titles(fig, axs, f"{sweep}: success probability", [], None)
        p = table[0] if table else None
        return empty(fig, axs[0], _why_empty(table) or "the sweep has no axis: P(success) = "
                     f"{p['p_success']:.2f} over {p['n_seeds']} trials (95% interval {p['p_lo']:.2f}-{p['p_hi']:.2f})")
    if y is None:
        return _phase_lines(fig, axs, panels, sweep, x, n.by, n.labels, names, table)
    _titles(fig, axs, f"{sweep}: success probability", names,
            _notes("white line: p = 1/2; text: successes/seeds", _why_empty(table)))
    _label_outer(axs, n.labels(x), n.labels(y))
    if not table:
        return empty(fig, axs[0], NO_TRIAL)
    xs, ys = sorted_values({r[x] for r in table}), sorted_values({r[y] for r in table})
    for ax, (_, rows) in zip(axs, panels):
        im = _heat_map(ax, rows, x, y, xs, ys)
    fig.colorbar(im, ax=axs, label="P(success) over seeds", shrink=0.9)
    return fig


def _heat_map(ax, rows: list[dict], x: str, y: str, xs: list, ys: list):
    grid = [[math.nan] * len(xs) for _ in ys]
    for r in rows:
        grid[ys.index(r[y])][xs.index(r[x])] = r["p_success"]
    im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    # The 1/2 contour of a discrete grid: the cell edges between p >= 1/2 and p < 1/2.
    for (x0, y0, x1, y1) in _half_edges(grid):
        ax.plot([x0, x1], [y0, y1], color="white", lw=2.5, solid_capstyle="round")
    # as large as the cells allow: two lines of text in each, on grids from 2 x 2 to 20 x 20
    cells = max(len(xs), len(ys))
    small = "medium" if cells <= 5 else "small" if cells <= 8 else "x-small" if cells <= 12 else "xx-small"
    for r in rows:
        p = r["p_success"]
        # inside its cell: no part of the layout (a hundred texts measured again by each layout pass)
        ax.text(xs.index(r[x]), ys.index(r[y]), f"{p:.2f}\n{r['successes']}/{r['n_seeds']}", ha="center",
                va="center", fontsize=small, linespacing=1.1, color="white" if p < 0.6 else "black", in_layout=False)
    ax.set_xticks(range(len(xs)), [tick(v, x) for v in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_yticks(range(len(ys)), [tick(v, y) for v in ys])
    return im


def _phase_lines(fig, axs, panels, sweep: str, x: str, by: tuple[str, ...], labels: Labels, names: list[str],
                 table: list[dict]):
    """P(success) along one axis with its Wilson interval: one line per combination of `by`."""
    _titles(fig, axs, f"{sweep}: success probability", names, _notes("bars: 95% Wilson interval", _why_empty(table)))
    _label_outer(axs, labels(x), "P(success) over seeds")
    if not table:
        return empty(fig, axs[0], NO_TRIAL)
    xs = sorted_values({r[x] for r in table})
    keys = [k for k, _ in groups(table, by)]
    color = dict(zip(keys, figure.colors(len(keys))))
    for ax, (_, rows) in zip(axs, panels):
        ax.set_ylim(-0.05, 1.05)
        for i, (key, group) in enumerate(groups(rows, by)):
            group = sorted(group, key=lambda r: (r[x] is None, r[x]))
            dodge = (i - (len(keys) - 1) / 2) * 0.06  # bars of different lines side by side, not on top
            ax.errorbar([xs.index(r[x]) + dodge for r in group], [r["p_success"] for r in group],
                        yerr=[[r["p_success"] - r["p_lo"] for r in group], [r["p_hi"] - r["p_success"] for r in group]],
                        fmt="o-", color=color[key] if by else OKABE_ITO[0], capsize=3, label=name(key, by) if by else None)
        ax.axhline(0.5, color="gray", ls="--", lw=1)
        ax.set_xticks(range(len(xs)), [tick(v, x) for v in xs], rotation=45 if len(xs) > 6 else 0)
        ax.grid(True, axis="y", alpha=0.3)
    if by:
        figure.legend(axs[-1], len(keys))
    return fig


def plot_curves(store: Store, sweep: str, metric: str | None = None, trial_ids: list[str] | None = None,
                max_trials: int = 6, x: str = "step", by: AxisNames = None, facet: str | None = None):
    """Learning curves: the median over the seeds of each group with a band over their quartiles.

    `metric` defaults to the sweep's success metric; `x` aligns the curves on the training `step`,
    the `samples` seen or the training `flops` (samples x the trial's FLOPs per sample). Groups are
    the combinations of `by` (default: the sweep's axes, one group per cell); `facet`: one panel per
    value of that axis. Solid: `metric`; dashed: its `train_` counterpart when recorded. Curves are
    interpolated per trial onto the group's x values (within each trial's own range) before the
    median is taken, so trials evaluated at different points still align; the median and band end
    where fewer than half of the group's trials still report (trials stop at their success, and
    the few left past that point are the slow ones).

    With `trial_ids`, or while no trial has ended yet (the first `max_trials` running ones), each
    trial is its own curve, and a dotted vertical line marks its onset step (where its loss, as
    `phases.transitions` picks it, falls halfway).

    Raises:
        StoreError: unknown sweep. UsageError: a metric the sweep does not record, an unknown `x`
            or axis, or `flops` for trials that record no size.
    """
    if x not in CURVE_X:
        raise UsageError(f"curves are drawn against {', '.join(CURVE_X)}; got {x!r}")
    with open_sweep(store, sweep) as (con, info, _):
        metric = check_metric(con, info, metric or info.success.metric)
        train = "train_" + metric[len("test_"):] if metric.startswith("test_") else None
        train = train if train in reported_metrics(con) else None
        ended = con.execute("SELECT count(*) FROM trials WHERE status <> 'failed'").fetchall()[0][0]
        if trial_ids or not ended:
            ids = trial_ids or [r[0] for r in con.execute(
                "SELECT DISTINCT trial_id FROM metrics ORDER BY trial_id LIMIT ?", [max_trials]).fetchall()]
            return _trial_curves(store, con, info, sweep, metric, train, ids, x, running=not trial_ids)
        facet = checked_facet(con, info, facet, ())
        by = lines_by(con, info, by, leave_out=(facet,))
        keys = tuple(a for a in (facet, *by) if a is not None)
        rows = _curve_rows(con, keys, metric, train, x)
        labels = sweep_labels(con, info)
    why = NO_TRIAL if x == "step" else f"no curve records its samples, so none can be drawn over {CURVE_X[x]}; use --x step"
    return _band_curves(sweep, rows, metric, train, x, by, facet, labels, why)


def _curve_rows(con, keys: tuple[str, ...], metric: str, train: str | None, x: str) -> list[dict]:
    """Every evaluation of every non-failed trial: its group keys, trial_id, x and the metrics."""
    cols = "".join(f"t.{ident(k)}, " for k in keys)
    if x != "step" and "samples" not in columns(con, "metrics"):
        at = "NULL"
    elif x == "flops":
        have = columns(con, "trials")
        sizes = (["t.flops_per_sample"] if "flops_per_sample" in have else []) + \
            ([f"{FLOPS_PER_PARAM_PER_TOKEN}::DOUBLE * t.n_params"] if "n_params" in have else [])
        if not sizes:
            raise UsageError("curves against FLOPs need the trials' size (flops_per_sample or n_params), "
                             "which this sweep does not record; use --x step or samples")
        at = f"coalesce({', '.join(sizes)}) * m.samples"
    else:
        at = f"m.{x}"
    values = f"m.{ident(metric)} AS _y" + (f", m.{ident(train)} AS _train" if train else ", NULL AS _train")
    return con.sql(f"SELECT {cols} t.trial_id, ({at})::DOUBLE AS _x, {values} FROM metrics m "
                   f"JOIN trials t USING (trial_id) WHERE t.status <> 'failed' AND _x IS NOT NULL "
                   f"ORDER BY t.trial_id, _x").to_arrow_table().to_pylist()


def _band(series: list[tuple[list, list]], log_x: bool):
    """(x, median, q1, q3, trials) of curves `series` [(xs, ys) per trial], interpolated onto their
    common x values (a grid of `CURVE_GRID` points when they have more)."""
    import numpy as np

    every = np.unique(np.concatenate([np.asarray(s[0], dtype=float) for s in series]))
    if log_x:
        every = every[every > 0]
    if len(every) > CURVE_GRID:
        lo, hi = every[0], every[-1]
        every = np.geomspace(lo, hi, CURVE_GRID) if log_x else np.linspace(lo, hi, CURVE_GRID)
    stack = np.full((len(series), len(every)), np.nan)
    for i, (xs, ys) in enumerate(series):
        xs, ys = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        keep = np.isfinite(ys)
        xs, ys = xs[keep], ys[keep]
        if len(xs):
            inside = (every >= xs[0]) & (every <= xs[-1])
            stack[i, inside] = np.interp(every[inside], xs, ys)
    seen = (~np.isnan(stack)).sum(axis=0)
    # Trials stop at their success: past the point where half of them stopped, the few left are the
    # slow ones, and their median would read as the group's.
    kept = seen >= max(1, len(series) / 2)
    stack, every, seen = stack[:, kept], every[kept], seen[kept]
    if not len(every):
        return every, every, every, every, seen
    q1, med, q3 = np.nanpercentile(stack, (25, 50, 75), axis=0)
    return every, med, q1, q3, seen


def _band_curves(sweep: str, rows: list[dict], metric: str, train: str | None, x: str, by: tuple[str, ...],
                 facet: str | None, labels: Labels, why_empty: str):
    panels = groups(rows, (facet,)) if facet and rows else [((), rows)]
    fig, axs = figure.panels(len(panels), sharex=True, sharey=True)
    note = "median and quartiles over the seeds, where at least half still run" + ("; dashed: train" if train else "")
    _titles(fig, axs, f"{sweep}: learning curves", [name(k, (facet,)) for k, _ in panels] if facet else [], note)
    _label_outer(axs, CURVE_X[x], metric)
    names = [*((facet,) if facet else ()), *by, x, f"{metric}_median", f"{metric}_q1", f"{metric}_q3", "n_trials"]
    attach(fig, pa.table({n: pa.array([], pa.null()) for n in names}))  # the columns, until rows are drawn
    if not rows:
        return empty(fig, axs[0], why_empty)
    xs_all = [r["_x"] for r in rows]
    log_x = x != "step" and figure.is_log([v for v in xs_all if v > 0])
    keys = [k for k, _ in groups(rows, by)]
    color = dict(zip(keys, figure.colors(len(keys))))
    drawn = []
    for ax, (pkey, prows) in zip(axs, panels):
        for key, group in groups(prows, by):
            trials = groups(group, ("trial_id",))
            at, med, q1, q3, seen = _band([([r["_x"] for r in t], [r["_y"] for r in t]) for _, t in trials], log_x)
            if not len(at):
                continue
            c = color[key]
            ax.plot(at, med, color=c, label=name(key, by) if by else "median over trials")
            if len(trials) > 1:
                ax.fill_between(at, q1, q3, color=c, alpha=0.2, lw=0)
            if train:
                t_at, t_med, *_ = _band([([r["_x"] for r in t], [r["_train"] for r in t]) for _, t in trials], log_x)
                ax.plot(t_at, t_med, color=c, ls="--", lw=0.8 * _lw())
            drawn += [{**dict(zip((facet,), pkey)), **dict(zip(by, key)), x: float(a), f"{metric}_median": float(m),
                       f"{metric}_q1": float(lo), f"{metric}_q3": float(hi), "n_trials": int(n)}
                      for a, m, lo, hi, n in zip(at, med, q1, q3, seen)]
        if log_x:  # a FLOPs or samples axis over decades: label the decades only
            figure.log(ax, "x", minor_labels=False)
        else:
            figure.plain_numbers(ax, "x")
        ax.grid(True, alpha=0.3)
    if drawn:
        attach(fig, drawn)
    figure.legend(axs[-1], len(keys), outside=len(axs) > 1)
    return fig


def _lw() -> float:
    import matplotlib

    return float(matplotlib.rcParams["lines.linewidth"])


def _trial_curves(store: Store, con, info, sweep: str, metric: str, train: str | None, ids: list[str], x: str,
                  running: bool):
    """One curve per trial in `ids`, with its onset step marked (the running trials' when `running`)."""
    from paretolab.analysis.phases import transitions

    at = "samples" if x == "samples" else "step"  # a running trial has no size yet: FLOPs fall back on steps
    cols = f"{at}, {ident(metric)}" + (f", {ident(train)}" if train else "")
    curves = {t: rows for t in ids if (rows := con.execute(
        f"SELECT {cols} FROM metrics WHERE trial_id = ? ORDER BY step", [t]).fetchall())}
    names = _trial_names(con, info.axes if info.axes and running else (*info.axes, "seed"), list(curves))
    onsets = {r["trial_id"]: r["onset_step"]
              for r in transitions(store, sweep, accuracy=None, train_error=None, test_error=None).to_pylist()}
    fig, (ax,) = figure.panels(1)
    ax.set(xlabel=CURVE_X[at], ylabel=metric)
    marked = [t for t in curves if onsets.get(t) is not None and at == "step"]
    keys = [k for k, there in (("dashed: train", train), ("dotted: onset", marked)) if there]
    ax.set_title(f"{sweep}: learning curves" + (f" ({'; '.join(keys)})" if keys else ""))
    attach(fig, [{"trial_id": t, at: r[0], metric: r[1]} for t, rows in curves.items() for r in rows])
    if not curves:
        return empty(fig, ax, NO_TRIAL if running else "no curve for these trials")
    for color, (t, rows) in zip(figure.colors(len(curves)), curves.items()):
        # a metric reported at some steps only (a function that evaluates every k steps) has gaps: skip them
        marker = "o" if len(rows) < 10 else None  # a short curve (one evaluation so far) still shows
        ax.plot(*_series(rows, 1), color=color, marker=marker, ms=3, label=names.get(t) or t)
        if train:
            ax.plot(*_series(rows, 2), color=color, lw=0.7 * _lw(), ls="--", marker=marker, ms=2)
        if t in marked:
            ax.axvline(onsets[t], color=color, ls=":", lw=1.2)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")
    subtitle(ax, f"running trials: {NO_TRIAL}" if running else None)
    return fig


def _trial_names(con, axes: Sequence[str], ids: list[str]) -> dict[str, str]:
    """`a=1, b=x` per trial id, over those of `axes` the trials have."""
    have = columns(con, "trials")
    shown = [a for a in axes if a in have]
    rows = con.execute(f"SELECT trial_id{''.join(', ' + ident(a) for a in shown)} FROM trials "
                       f"WHERE trial_id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()
    return {r[0]: ", ".join(f"{a}={tick(v, a)}" for a, v in zip(shown, r[1:])) for r in rows}


def plot_luck(store: Store, sweep: str, cost: str = "steps_to_success", by: AxisNames = None,
              success: str | None = None, facet: str | None = None):
    """Best of k seeds, against k: the expected (mean) cost to the first success when k seeds run in
    parallel (left) and the probability that at least one of them succeeds (right), one line per
    combination of `by` (default the sweep's axes, so one per cell; () pools every trial);
    `facet`: one row of both panels per value of that axis.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, cost or criterion.
    """
    return draw_luck(luck_numbers(store, sweep, cost=cost, by=by, success=success, facet=facet))


def draw_luck(n: LuckNumbers):
    """The figure of `plot_luck` from its numbers (no store read)."""
    table, sweep, cost, by, facet = n.rows, n.sweep, n.cost, n.by, n.facet
    rows_ = groups(table, (facet,)) if facet and table else [((), table)]
    fig, axs = figure.panels(2 * len(rows_), columns=2, sharex=True)
    attach(fig, table)
    short = label(cost).replace(" to success", "")
    names = [f"{t}{', ' + name(k, (facet,)) if facet else ''}" for k, _ in rows_ for t in ("cost", "chance")]
    _titles(fig, axs, f"{sweep}: luck (best of k seeds)", names if facet else [], None)
    if not facet:
        axs[0].set_title("cost", fontsize="medium")
        axs[1].set_title("chance", fontsize="medium")
    keys = [k for k, _ in groups(table, by)]
    color = dict(zip(keys, figure.colors(len(keys))))
    for i, (_, rows) in enumerate(rows_):
        cost_ax, p_ax = axs[2 * i], axs[2 * i + 1]
        cost_ax.set(xlabel="seeds run in parallel (k)", ylabel=f"expected {short} to the first success")
        p_ax.set(xlabel="seeds run in parallel (k)", ylabel="P(at least one success)", ylim=(-0.03, 1.03))
        _luck_panels(cost_ax, p_ax, rows, by, color, cost)
    if table and by:
        figure.legend(axs[1], len(keys))
    return fig


def _luck_panels(cost_ax, p_ax, rows: list[dict], by: tuple[str, ...], color: dict, cost: str) -> None:
    from matplotlib.ticker import NullFormatter

    if not rows:
        empty(cost_ax.figure, cost_ax, NO_TRIAL)
        empty(p_ax.figure, p_ax, NO_TRIAL)
        return
    ks = sorted({r["k_seeds"] for r in rows})
    for key, group in groups(rows, by):
        name_ = name(key, by) if by else "all trials"
        p_ax.plot([r["k_seeds"] for r in group], [r["p_any_success"] for r in group], "o-", color=color[key],
                  label=name_)
        priced = [r for r in group if r["expected_cost"] is not None]
        if priced:
            cost_ax.plot([r["k_seeds"] for r in priced], [r["expected_cost"] for r in priced], "o-", color=color[key],
                         label=name_)
    # every tick labelled up to 8 of them; beyond, every `thin`-th (cells of thousands of seeds
    # have k up to 2^13), and always the last (all the seeds), without its close neighbours
    thin = -(-len(ks) // 8)
    shown = [str(k) if i % thin == 0 and math.log2(ks[-1] / k) >= 0.75 * thin else "" for i, k in enumerate(ks)]
    shown[-1] = str(ks[-1])
    for ax in (cost_ax, p_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, shown)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, which="major", alpha=0.3)
    priced = [r["expected_cost"] for r in rows if r["expected_cost"] is not None]
    if not priced:
        cells = [r for r in rows if r["k_seeds"] == 1]
        empty(cost_ax.figure, cost_ax, _why_empty(cells) or f"no successful trial has a {cost}")
    else:
        figure.scale(cost_ax, "y", priced)


def plot_fit(store: Store, sweep: str, y: str = "steps_to_success", x: str | None = None, by: AxisNames = None,
             success: str | None = None, n_boot: int = 1000, facet: str | None = None):
    """Trials' cost against `x` on log-log axes with the fitted power law and its 95% exponent band,
    one panel per group.

    `x` defaults as in `fit.fit` (the first numeric axis with values > 0). Groups: the combinations
    of `by` (in a comparison, the sweep too), each fitted and drawn in its own panel; with `facet`,
    one panel per value of `facet` and one fit per `by` group within it. Trials that never succeeded
    (censored: left out of the fit) are drawn as hollow triangles at the cost they ran to without
    succeeding, a lower bound on their cost.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, cost or criterion.
    """
    from paretolab.analysis.cells import trial_costs
    from paretolab.analysis.fit import default_x, fit

    with open_sweep(store, sweep) as (con, info, _):
        facet = checked_facet(con, info, facet, (x,))
        by = lines_by(con, info, by, default=())
        if x is None:
            try:
                x = default_x(con, info)
            except UsageError as e:
                fig, (ax,) = figure.panels(1)
                ax.set_title(f"{sweep}: power-law fit")
                return empty(fig, ax, str(e).replace("; ", "\n"))
        labels, compared = sweep_labels(con, info), info.compared
    keys = tuple(dict.fromkeys(((COMPARED,) if compared else ()) + ((facet,) if facet else ()) + by))
    fits = fit(store, sweep, y=y, x=x, by=list(keys), n_boot=n_boot, success=success).to_pylist()
    points = trial_costs(store, sweep, success=success).to_pylist()
    outer = tuple(k for k in keys if k not in by) if facet else keys
    inner = by if facet else ()
    panels = groups(fits, outer) if outer and fits else [((), fits)]
    fig, axs = figure.panels(len(panels), sharex=True, sharey=True)
    attach(fig, fits)
    _titles(fig, axs, f"{sweep}: power-law fit", [name(k, outer) for k, _ in panels] if outer else [],
            "band: 95% bootstrap interval of b; triangles: censored trials at the cost they ran to")
    _label_outer(axs, labels(x), labels(y))
    placed = [p for p in points if p[y] and p[y] > 0 and p[x] and p[x] > 0]
    if not placed:
        return empty(fig, axs[0], NO_TRIAL if not points else NO_SUCCESS if not any(p[y] for p in points)
                     else f"no trial that succeeded has {x} > 0 and {y} > 0")
    bound = _censored_at(y)
    colors = figure.colors(max(1, len(groups(fits, inner)))) if inner else [OKABE_ITO[0]]
    for ax, (pkey, pfits) in zip(axs, panels):
        for color, f in zip(colors, pfits):
            mine = [p for p in points if all(p[k] == f[k] for k in keys) and p[x] and p[x] > 0]
            _fit_panel(ax, f, mine, x, y, bound, color, name(tuple(f[k] for k in inner), inner) if inner else None)
        figure.log(ax, "x")
        figure.log(ax, "y")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=1)
    if not any(f["exponent"] is not None for f in fits):
        subtitle(axs[0], "no fit: " + "; ".join(sorted({f["status"] for f in fits})))
    return fig


def _censored_at(y: str):
    """The cost a trial that never succeeded ran to: its steps, samples, or samples x FLOPs per sample."""
    def at(p: dict) -> float | None:
        if y == "steps_to_success":
            return p.get("steps")
        per = p.get("flops_per_sample") or (FLOPS_PER_PARAM_PER_TOKEN * p["n_params"] if p.get("n_params") else None)
        samples = p.get("samples")
        return samples if y == "samples_to_success" else (per * samples if per and samples else None)
    return at


def _fit_panel(ax, f: dict, points: list[dict], x: str, y: str, bound, color, group: str | None) -> None:
    import numpy as np

    from paretolab.analysis.fit import predict

    ok = [p for p in points if p[y] and p[y] > 0]
    never = [(p[x], b) for p in points if p[y] is None and (b := bound(p)) and b > 0]
    prefix = f"{group}: " if group else ""
    ax.plot([p[x] for p in ok], [p[y] for p in ok], "o", color=color, alpha=0.45, ms=4, label=f"{prefix}succeeded")
    if never:
        ax.scatter([c[0] for c in never], [c[1] for c in never], marker="^", s=22, facecolors="none",
                   edgecolors=color, linewidths=0.9, label=f"{prefix}censored: ran this far ({len(never)})")
    if f["exponent"] is None or not ok:
        return
    xs = np.geomspace(min(p[x] for p in ok), max(p[x] for p in ok), 50)
    ci = f" [{f['exponent_lo']:.2f}, {f['exponent_hi']:.2f}]" if f.get("exponent_lo") is not None else ""
    ax.plot(xs, predict(f["prefactor"], f["exponent"], xs), color=color, lw=1.3 * _lw(),
            label=f"{prefix}b = {f['exponent']:.2f}{ci}, censored {f['censored_fraction']:.0%}")
    if f.get("exponent_lo") is not None:
        x0 = float(np.exp(np.mean(np.log([p[x] for p in ok]))))
        y0 = float(predict(f["prefactor"], f["exponent"], x0))
        lo, hi = (y0 * (xs / x0) ** f["exponent_lo"], y0 * (xs / x0) ** f["exponent_hi"])
        ax.fill_between(xs, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15, lw=0)


def _series(rows: list[tuple], column: int) -> tuple[list, list]:
    """(x, values) of one column of curve rows, where the value is recorded."""
    kept = [(r[0], r[column]) for r in rows if r[column] is not None]
    return [k[0] for k in kept], [k[1] for k in kept]


def _titles(fig, axs, title: str, panel_names: list[str], note: str | None) -> None:
    """`title` (and `note` under it) over one panel, or over the figure with each panel named."""
    if len(axs) == 1 and not panel_names:
        axs[0].set_title(title)
        subtitle(axs[0], note)
        return
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize="medium")
    for ax, n in zip(axs, panel_names):
        ax.set_title(n, fontsize="small")


def _notes(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _label_outer(axs, xlabel: str, ylabel: str) -> None:
    """Label the x axis of the bottom panel of each column and the y axis of the first column."""
    cols = max(ax.get_subplotspec().colspan.stop for ax in axs)
    for i, ax in enumerate(axs):
        spec = ax.get_subplotspec()
        if i + cols >= len(axs):
            ax.set_xlabel(xlabel)
        if spec.is_first_col():
            ax.set_ylabel(ylabel)


def _why_empty(cells: list[dict]) -> str | None:
    """What a plot over these cells lacks: every trial, or every success; None when it lacks neither."""
    if not cells:
        return NO_TRIAL
    if not any(r["successes"] for r in cells):
        return NO_SUCCESS
    return None


def _half_edges(grid: list[list[float]]) -> list[tuple[float, float, float, float]]:
    edges = []
    for j, row in enumerate(grid):
        for i, p in enumerate(row):
            right = row[i + 1] if i + 1 < len(row) else math.nan
            up = grid[j + 1][i] if j + 1 < len(grid) else math.nan
            if not math.isnan(right) and (p >= 0.5) != (right >= 0.5):
                edges.append((i + 0.5, j - 0.5, i + 0.5, j + 0.5))
            if not math.isnan(up) and (p >= 0.5) != (up >= 0.5):
                edges.append((i - 0.5, j + 0.5, i + 0.5, j + 0.5))
    return edges

"""Plots of a sweep: frontier, phase diagram, learning curves, luck and scaling fits.

Each `plot_*` function reads the store through the analysis functions and returns a matplotlib
Figure; `save(fig, path)` writes PNG, SVG or PDF by the file's suffix. Colours are the Okabe-Ito
palette and the viridis map, both readable with the common colour-vision deficiencies.

What a plot draws by default comes from the sweep (its axes in `SweepInfo.leading_axes` order, its
success criterion, the metrics it reported), so every plot draws any sweep: the frontier over its
first numeric axis with one line per combination of its other axes, the phase diagram over its
first two axes (a success curve over one axis), the curves of its success metric, luck per cell.
Axes are labelled with their own names. A sweep with no trial ended or succeeded yet gives a figure
that says so, and an axis is logarithmic only when every value on it is positive and they span a
factor of `LOG_SPAN` or more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from paretolab.analysis.cells import (DATA_AXIS, check_axes, check_metric, columns, default_cost, ident,
                                      numeric_axes, open_sweep, reported_metrics)
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FORMATS = (".png", ".svg", ".pdf")
COST_LABELS = {"steps_to_success": "steps to success", "samples_to_success": "samples to success",
               "flops_to_success": "training FLOPs to success"}
# Grids of sizes, rates and budgets are geometric (16, 64, 256; 1e-3, 1e-2): a factor of 8 (three
# doublings) between the smallest and largest value gets a log axis; narrower ranges read better linear.
LOG_SPAN = 8
NO_TRIAL = "no trial has ended yet"
NO_SUCCESS = "no trial has succeeded yet"

AxisNames = Sequence[str] | str | None


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label(name: str) -> str:
    """The axis label of a column: a cost in words, anything else (an axis of the sweep) by its name."""
    return COST_LABELS.get(name, name)


def save(fig, path: str | Path) -> Path:
    """Write `fig` to `path` (.png, .svg or .pdf) and close it.

    Raises:
        UsageError: another suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"cannot write a plot as {path.suffix or 'no suffix'!r}; use {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return path


def plot_frontier(store: Store, sweep: str, x: str | None = None, y: str | None = None, by: AxisNames = None,
                  min_success_prob: float = 0.5, success: str | None = None):
    """Cost to success against `x`, one line per combination of `by`, frontier cells circled.

    Like Fig. 1-2 of Edelman et al. (2023): each point is a cell whose success probability is at
    least `min_success_prob`, placed at its median cost; cells whose `x` is NULL (online training
    for train_size) sit at the right edge. The frontier is the non-dominated set over (x, y) across
    all lines. Defaults: x the sweep's first numeric axis, y its cost (`cells.default_cost`), by its
    other axes (a comma-separated string is split; () draws one line).

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, objective or criterion.
    """
    from paretolab.analysis.frontier import frontier

    with open_sweep(store, sweep) as (con, info, _):
        x = x or next(iter(numeric_axes(con, info)), None)
        y = y or default_cost(con)
        by = _by(con, info, by, leave_out=(x,))
        axes = info.axes
    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    ax.set_title(f"{sweep}: frontier (cells with p_success >= {min_success_prob:g})")
    if x is None:
        return _empty(fig, ax, f"no numeric axis to draw a frontier over\n(axes: {', '.join(axes) or 'none'})")
    cells = frontier(store, sweep, objectives=[(x, "min"), (y, "min")], min_success_prob=min_success_prob,
                     success=success, all_cells=True).to_pylist()
    shown = [r for r in cells if r["p_success"] >= min_success_prob and r[y] is not None]
    ax.set(xlabel=label(x), ylabel=f"median {label(y)}")
    if not shown:
        return _empty(fig, ax, _why_empty(cells) or f"no cell reaches p_success >= {min_success_prob:g}")
    finite = sorted({r[x] for r in shown if r[x] is not None})
    log_x = _is_log(finite)
    null_x = _null_position(finite, log_x) if any(r[x] is None for r in shown) else None

    def place(r):
        return r[x] if r[x] is not None else null_x

    groups = _groups(shown, by)
    for color, (key, rows) in zip(_colors(len(groups)), groups):
        rows = sorted(rows, key=lambda r: (r[x] is None, r[x]))
        ax.plot([place(r) for r in rows], [r[y] for r in rows], "o-", color=color, ms=4, lw=1.3,
                label=_name(key, by) if by else None)
    front = [r for r in shown if r["on_frontier"]]
    ax.plot([place(r) for r in front], [r[y] for r in front], "o", ms=11, mfc="none", mec="black", mew=1.3,
            label="frontier")
    _scale(ax, "x", finite)
    _scale(ax, "y", [r[y] for r in shown])
    _grid_ticks(ax, finite, null_x, x)
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, len(groups) + 1)
    return fig


def plot_phase(store: Store, sweep: str, x: str | None = None, y: str | None = None, success: str | None = None):
    """Success probability over two axes as a heat map with the p = 1/2 contour.

    Defaults: the sweep's first two axes (`leading_axes`). Cells are pooled over every other axis.
    NULL values of an axis (e.g. online training) get their own column or row, labelled. A sweep
    with one axis gets the success probability along it with its 95% Wilson interval; one with
    none, a figure that says so.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis or criterion.
    """
    from paretolab.analysis.cells import cells

    if x is not None and x == y:
        raise UsageError(f"the phase diagram needs two different axes, got {x!r} twice")
    with open_sweep(store, sweep) as (con, info, _):
        named = check_axes(con, info, [a for a in (x, y) if a is not None])
    rest = [a for a in info.leading_axes() if a not in named]
    x = x or (rest.pop(0) if rest else None)
    y = y or (rest.pop(0) if rest and x is not None else None)
    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    table = cells(store, sweep, axes=[a for a in (x, y) if a is not None], success=success).to_pylist()
    if x is None:
        ax.set_title(f"{sweep}: success probability")
        p = table[0] if table else None
        return _empty(fig, ax, _why_empty(table) or "the sweep has no axis: P(success) = "
                      f"{p['p_success']:.2f} over {p['n_seeds']} trials (95% interval {p['p_lo']:.2f}-{p['p_hi']:.2f})")
    if y is None:
        return _phase_line(fig, ax, sweep, x, table)
    ax.set(xlabel=label(x), ylabel=label(y), title=f"{sweep}: success probability (white line: p = 1/2)")
    if not table:
        return _empty(fig, ax, NO_TRIAL)
    xs = _sorted({r[x] for r in table})
    ys = _sorted({r[y] for r in table})
    grid = [[math.nan] * len(xs) for _ in ys]
    for r in table:
        grid[ys.index(r[y])][xs.index(r[x])] = r["p_success"]
    im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    # The 1/2 contour of a discrete grid: the cell edges between p >= 1/2 and p < 1/2.
    for (x0, y0, x1, y1) in _half_edges(grid):
        ax.plot([x0, x1], [y0, y1], color="white", lw=2.5, solid_capstyle="round")
    for j, row in enumerate(grid):
        for i, p in enumerate(row):
            if not math.isnan(p):
                ax.text(i, j, f"{p:.2f}", ha="center", va="center", fontsize=7, color="white" if p < 0.6 else "black")
    ax.set_xticks(range(len(xs)), [_tick(v, x) for v in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_yticks(range(len(ys)), [_tick(v, y) for v in ys])
    _subtitle(ax, _why_empty(table))
    fig.colorbar(im, ax=ax, label="P(success) over seeds")
    return fig


def _phase_line(fig, ax, sweep: str, x: str, table: list[dict]):
    """The phase diagram of a one-axis sweep: P(success) at each value, with its Wilson interval."""
    ax.set(xlabel=label(x), ylabel="P(success) over seeds", ylim=(-0.05, 1.05),
           title=f"{sweep}: success probability (bars: 95% Wilson interval)")
    if not table:
        return _empty(fig, ax, NO_TRIAL)
    rows = sorted(table, key=lambda r: (r[x] is None, r[x]))
    at = range(len(rows))
    p = [r["p_success"] for r in rows]
    ax.errorbar(at, p, yerr=[[r["p_success"] - r["p_lo"] for r in rows], [r["p_hi"] - r["p_success"] for r in rows]],
                fmt="o-", color=OKABE_ITO[0], ms=5, capsize=3)
    ax.axhline(0.5, color="gray", ls="--", lw=1)
    ax.set_xticks(at, [_tick(r[x], x) for r in rows], rotation=45 if len(rows) > 6 else 0)
    ax.grid(True, axis="y", alpha=0.3)
    _subtitle(ax, _why_empty(table))
    return fig


def plot_curves(store: Store, sweep: str, metric: str | None = None, trial_ids: list[str] | None = None,
                max_trials: int = 6):
    """Learning curves of a few trials with their detected onsets marked.

    `metric` defaults to the sweep's success metric. Without `trial_ids`, one trial per cell (its
    lowest seed), spread over the cells, up to `max_trials`; while no trial has ended, the first
    running ones. Solid: `metric`; dashed: its `train_` counterpart when recorded; a dotted
    vertical line marks each curve's onset step (where its loss, as `phases.transitions` picks it,
    falls halfway).

    Raises:
        StoreError: unknown sweep. UsageError: a metric the sweep does not record.
    """
    from paretolab.analysis.phases import transitions

    with open_sweep(store, sweep) as (con, info, _):
        metric = check_metric(con, info, metric or info.success.metric)
        train = "train_" + metric[len("test_"):] if metric.startswith("test_") else None
        train = train if train in reported_metrics(con) else None
        ids = trial_ids or _representatives(con, info.axes, max_trials)
        running = not trial_ids and not ids
        ids = ids or [r[0] for r in con.execute("SELECT DISTINCT trial_id FROM metrics ORDER BY trial_id LIMIT ?",
                                                [max_trials]).fetchall()]
        cols = f"step, {ident(metric)}" + (f", {ident(train)}" if train else "")
        curves = {t: rows for t in ids if (rows := con.execute(
            f"SELECT {cols} FROM metrics WHERE trial_id = ? ORDER BY step", [t]).fetchall())}
        names = _trial_names(con, info.axes if info.axes and not trial_ids else (*info.axes, "seed"), list(curves))
    onsets = {r["trial_id"]: r["onset_step"]
              for r in transitions(store, sweep, accuracy=None, train_error=None, test_error=None).to_pylist()}
    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    ax.set(xlabel="training step", ylabel=metric)
    marked = [t for t in curves if onsets.get(t) is not None]
    keys = [k for k, there in (("dashed: train", train), ("dotted: onset", marked)) if there]
    ax.set_title(f"{sweep}: learning curves" + (f" ({'; '.join(keys)})" if keys else ""))
    if not curves:
        return _empty(fig, ax, NO_TRIAL if not trial_ids else "no curve for these trials")
    for color, (t, rows) in zip(_colors(len(curves)), curves.items()):
        # a metric reported at some steps only (a function that evaluates every k steps) has gaps: skip them
        marker = "o" if len(rows) < 10 else None  # a short curve (one evaluation so far) still shows
        ax.plot(*_series(rows, 1), color=color, lw=1.5, marker=marker, ms=3, label=names.get(t) or t)
        if train:
            ax.plot(*_series(rows, 2), color=color, lw=1, ls="--", marker=marker, ms=2)
        if t in marked:
            ax.axvline(onsets[t], color=color, ls=":", lw=1.2)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    _subtitle(ax, f"running trials: {NO_TRIAL}" if running else None)
    return fig


def _trial_names(con, axes: Sequence[str], ids: list[str]) -> dict[str, str]:
    """`a=1, b=x` per trial id, over those of `axes` the trials have."""
    have = columns(con, "trials")
    shown = [a for a in axes if a in have]
    rows = con.execute(f"SELECT trial_id{''.join(', ' + ident(a) for a in shown)} FROM trials "
                       f"WHERE trial_id IN (SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()
    return {r[0]: ", ".join(f"{a}={_tick(v, a)}" for a, v in zip(shown, r[1:])) for r in rows}


def plot_luck(store: Store, sweep: str, cost: str = "steps_to_success", by: AxisNames = None,
              success: str | None = None):
    """Expected cost to the first success when k seeds run in parallel, against k: one line per
    combination of `by` (default the sweep's axes, so one per cell; () pools every trial).

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, cost or criterion.
    """
    from paretolab.analysis.luck import luck

    with open_sweep(store, sweep) as (con, info, _):
        by = _by(con, info, by)
    table = luck(store, sweep, cost=cost, success=success, axes=list(by)).to_pylist()
    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    ax.set(xlabel="seeds run in parallel (k)",
           ylabel=f"expected {label(cost).replace(' to success', '')} to the first success",
           title=f"{sweep}: luck (best of k seeds)")
    priced = [r for r in table if r["expected_cost"] is not None]
    if not priced:
        cells = [r for r in table if r["k_seeds"] == 1]
        return _empty(fig, ax, _why_empty(cells) or f"no successful trial has a {cost}")
    groups = _groups(priced, by)
    for color, (key, rows) in zip(_colors(len(groups)), groups):
        ax.plot([r["k_seeds"] for r in rows], [r["expected_cost"] for r in rows], "o-", ms=4,
                color=color, label=_name(key, by) if by else "all trials")
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log", base=2)
    ks = sorted({r["k_seeds"] for r in priced})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    _scale(ax, "y", [r["expected_cost"] for r in priced])
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(groups))
    return fig


def plot_fit(store: Store, sweep: str, y: str = "steps_to_success", x: str | None = None, by: str | None = None,
             success: str | None = None, n_boot: int = 1000):
    """Trials' cost against `x` on log-log axes with the fitted power law and its 95% exponent band.

    `x` defaults as in `fit.fit` (the first numeric axis with values > 0); `by` fits each of its
    values separately.

    Raises:
        StoreError: unknown sweep. UsageError: an unknown axis, cost or criterion.
    """
    import numpy as np

    from paretolab.analysis.cells import trial_costs
    from paretolab.analysis.fit import default_x, fit, predict

    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    ax.set_title(f"{sweep}: power-law fit (band: 95% bootstrap interval of b)")
    with open_sweep(store, sweep) as (con, info, _):
        if x is None:
            try:
                x = default_x(con, info)
            except UsageError as e:
                return _empty(fig, ax, str(e).replace("; ", "\n"))
    fits = fit(store, sweep, y=y, x=x, by=[by] if by else None, n_boot=n_boot, success=success).to_pylist()
    points = trial_costs(store, sweep, success=success).to_pylist()
    ax.set(xlabel=label(x), ylabel=label(y))
    placed = [p for p in points if p[y] and p[y] > 0 and p[x] and p[x] > 0]
    if not placed:
        return _empty(fig, ax, NO_TRIAL if not points else NO_SUCCESS if not any(p[y] for p in points)
                      else f"no trial that succeeded has {x} > 0 and {y} > 0")
    for color, f in zip(_colors(len(fits)), fits):
        pts = [p for p in placed if by is None or p[by] == f[by]]
        name = f"{by}={_tick(f[by], by)}" if by else "trials that succeeded"
        ax.plot([p[x] for p in pts], [p[y] for p in pts], "o", color=color, alpha=0.35, ms=4, label=name)
        if f["exponent"] is None or not pts:
            continue
        xs = np.geomspace(min(p[x] for p in pts), max(p[x] for p in pts), 50)
        name = f"{by}={_tick(f[by], by)}: " if by else ""
        ci = f" [{f['exponent_lo']:.2f}, {f['exponent_hi']:.2f}]" if f.get("exponent_lo") is not None else ""
        ax.plot(xs, predict(f["prefactor"], f["exponent"], xs), color=color, lw=1.8,
                label=f"{name}b = {f['exponent']:.2f}{ci}, censored {f['censored_fraction']:.0%}")
        if f.get("exponent_lo") is not None:
            x0 = float(np.exp(np.mean(np.log([p[x] for p in pts]))))
            y0 = float(predict(f["prefactor"], f["exponent"], x0))
            lo, hi = (y0 * (xs / x0) ** f["exponent_lo"], y0 * (xs / x0) ** f["exponent_hi"])
            ax.fill_between(xs, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15)
    _log(ax, "x")
    _log(ax, "y")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    if not any(f["exponent"] is not None for f in fits):
        _subtitle(ax, "no fit: " + "; ".join(sorted({f["status"] for f in fits})))
    return fig


def _series(rows: list[tuple], column: int) -> tuple[list, list]:
    """(steps, values) of one column of curve rows, where the value is recorded."""
    kept = [(r[0], r[column]) for r in rows if r[column] is not None]
    return [k[0] for k in kept], [k[1] for k in kept]


def _by(con, info, by: AxisNames, leave_out: Sequence[str | None] = ()) -> tuple[str, ...]:
    """The axes to draw one line per combination of: `by` as given (checked), else the sweep's axes
    other than `leave_out`."""
    if by is None:
        return tuple(a for a in info.axes if a not in leave_out)
    names = [b.strip() for b in by.split(",") if b.strip()] if isinstance(by, str) else list(by)
    return check_axes(con, info, names)


def _groups(rows: list[dict], by: tuple[str, ...]) -> list[tuple[tuple, list[dict]]]:
    keys = _sorted({tuple(r[b] for b in by) for r in rows})
    return [(k, [r for r in rows if tuple(r[b] for b in by) == k]) for k in keys]


def _name(key: tuple, by: tuple[str, ...]) -> str:
    return ", ".join(f"{b}={_tick(v, b)}" for b, v in zip(by, key))


def _sorted(values) -> list:
    """Grid values in order, NULL last (within a tuple too)."""
    def order(v):
        return tuple((e is None, e) for e in v) if isinstance(v, tuple) else (v is None, v)

    return sorted(values, key=order)


def _why_empty(cells: list[dict]) -> str | None:
    """What a plot over these cells lacks: every trial, or every success; None when it lacks neither."""
    if not cells:
        return NO_TRIAL
    if not any(r["successes"] for r in cells):
        return NO_SUCCESS
    return None


def _empty(fig, ax, text: str):
    """`fig` with `text` in the middle of its (otherwise empty) axes."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="#555555",
            wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _subtitle(ax, text: str | None) -> None:
    if text:
        ax.set_title(f"{ax.get_title()}\n{text}", fontsize=10)


def _colors(n: int) -> list:
    """Okabe-Ito for up to 8 lines; beyond, an ordered viridis ramp (lines are usually a size axis)."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    import matplotlib

    return [matplotlib.colormaps["viridis"](i / max(1, n - 1) * 0.9) for i in range(n)]


def _legend(ax, entries: int) -> None:
    if entries > 6:  # many lines: keep the legend off the data
        ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.legend(fontsize=8, frameon=False)


def _is_log(values: list) -> bool:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) >= LOG_SPAN * min(numbers)


def _scale(ax, which: str, values: list) -> None:
    if _is_log(values):
        _log(ax, which)


def _log(ax, which: str) -> None:
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):  # LogFormatter picks which ticks get a label; 0.1 and 40, not 1e-01 and 4x10^1
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(Plain())
    axis.set_minor_formatter(Plain(labelOnlyBase=False))  # a few of them, within a decade


def _null_position(finite: list, log: bool) -> float:
    """Where the cells whose x is NULL go: right of the largest value."""
    if not finite:
        return 1.0
    if log:
        return max(finite) * 3
    return max(finite) + (max(finite) - min(finite)) / 4 if len(finite) > 1 else max(finite) + 1


def _grid_ticks(ax, values: list, null_x: float | None, axis: str) -> None:
    """Label the x axis at the grid's own values (and NULL's label at `null_x`), not at decades."""
    from matplotlib.ticker import NullFormatter

    ticks = values + ([null_x] if null_x is not None else [])
    ax.set_xticks(ticks, [_tick(v, axis) for v in values] + ([_tick(None, axis)] if null_x is not None else []),
                  rotation=45 if len(ticks) > 7 else 0)
    ax.xaxis.set_minor_formatter(NullFormatter())


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


def _tick(v, axis: str | None = None) -> str:
    """A grid value as a tick label; NULL is `online` for the training-set size (unlimited data)."""
    if v is None:
        return "online" if axis == DATA_AXIS else "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _representatives(con, axes: tuple[str, ...], max_trials: int) -> list[str]:
    """One trial per cell (its lowest seed), spread over the cells; for a sweep without axes, its
    first `max_trials` seeds."""
    seed = "seed" if "seed" in columns(con, "trials") else "trial_id"
    if not axes:
        return [r[0] for r in con.execute(f"SELECT trial_id FROM trials WHERE status <> 'failed' ORDER BY {seed}, "
                                          "trial_id LIMIT ?", [max_trials]).fetchall()]
    keys = ", ".join(ident(a) for a in axes)
    rows = con.execute(f"SELECT arg_min(trial_id, {seed}) FROM trials WHERE status <> 'failed' GROUP BY {keys} "
                       f"ORDER BY {keys}").fetchall()
    ids = [r[0] for r in rows]
    if len(ids) <= max_trials:
        return ids
    step = (len(ids) - 1) / (max_trials - 1) if max_trials > 1 else 1
    return [ids[round(i * step)] for i in range(max_trials)]

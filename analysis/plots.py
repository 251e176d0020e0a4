"""Plots of a sweep: frontier, phase diagram, learning curves, luck and scaling fits.

Each `plot_*` function reads the store through the analysis functions and returns a matplotlib
Figure; `save(fig, path)` writes PNG, SVG or PDF by the file's suffix. Colours are the Okabe-Ito
palette and the viridis map, both readable with the common colour-vision deficiencies.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from paretolab.analysis.cells import cells, metric_names, trial_costs
from paretolab.analysis.store import Store
from paretolab.errors import UsageError

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FORMATS = (".png", ".svg", ".pdf")
UNITS = {"train_size": "training-set size (examples)", "width": "width (hidden units)",
         "steps_to_success": "steps to success", "samples_to_success": "samples to success",
         "flops_to_success": "training FLOPs to success", "n": "input dimension n", "k": "parity degree k"}
SIZE_AXES = {"train_size", "width", "n", "steps_to_success", "samples_to_success", "flops_to_success",
             "batch_size", "lr", "test_size"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def label(name: str) -> str:
    return UNITS.get(name, name.replace("_", " "))


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


def _groups(table: pa.Table, by: str | None) -> list[tuple[object, list[dict]]]:
    rows = table.to_pylist()
    if by is None:
        return [(None, rows)]
    keys = sorted({r[by] for r in rows}, key=lambda v: (v is None, v))
    return [(k, [r for r in rows if r[by] == k]) for k in keys]


def plot_frontier(store: Store, sweep: str, x: str = "train_size", y: str = "flops_to_success",
                  by: str | None = "width", min_success_prob: float = 0.5, success: str | None = None):
    """Cost to success against `x`, one line per value of `by`, frontier cells circled.

    Like Fig. 1-2 of Edelman et al. (2023): each point is a cell whose success probability is at
    least `min_success_prob`, placed at its median cost; cells with `x` NULL (online) sit at the
    right edge. The frontier is the non-dominated set over (x, y) across all lines.
    """
    from paretolab.analysis.frontier import frontier

    table = frontier(store, sweep, objectives=[(x, "min"), (y, "min")], min_success_prob=min_success_prob,
                     success=success, all_cells=True)
    table = table.filter(pc.greater_equal(table["p_success"], min_success_prob))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    finite = [v for v in table[x].to_pylist() if v is not None]
    if not finite and table.num_rows == 0:
        ax.text(0.5, 0.5, f"no cell reaches p_success >= {min_success_prob}", ha="center", transform=ax.transAxes)
    online_x = max(finite) * 3 if finite else 1.0
    groups = _groups(table, by)
    for color, (key, rows) in zip(_colors(len(groups)), groups):
        rows = sorted(rows, key=lambda r: r[x] if r[x] is not None else math.inf)
        xs = [r[x] if r[x] is not None else online_x for r in rows]
        ax.plot(xs, [r[y] for r in rows], "o-", color=color, ms=4, lw=1.3, label=f"{by}={key}" if by else None)
    front = [r for r in table.to_pylist() if r["on_frontier"]]
    ax.plot([r[x] if r[x] is not None else online_x for r in front], [r[y] for r in front], "o", ms=11,
            mfc="none", mec="black", mew=1.3, label="frontier")
    _log_axes(ax, x, y)
    _grid_ticks(ax, sorted(set(finite)), online_x if any(v is None for v in table[x].to_pylist()) else None)
    ax.set(xlabel=label(x), ylabel=f"median {label(y)}",
           title=f"{sweep}: frontier (cells with p_success >= {min_success_prob:g})")
    ax.grid(True, which="major", alpha=0.3)
    _legend(ax, len(groups) + 1)
    return fig


def plot_phase(store: Store, sweep: str, x: str = "train_size", y: str = "width", success: str | None = None):
    """Success probability over two axes as a heat map with the p = 1/2 contour.

    Cells are pooled over every other axis of the sweep. NULL values of an axis (e.g. online
    training) get their own column or row, labelled.
    """
    table = cells(store, sweep, axes=[x, y], success=success).to_pylist()
    xs = sorted({r[x] for r in table}, key=lambda v: (v is None, v))
    ys = sorted({r[y] for r in table}, key=lambda v: (v is None, v))
    grid = [[math.nan] * len(xs) for _ in ys]
    for r in table:
        grid[ys.index(r[y])][xs.index(r[x])] = r["p_success"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    im = ax.imshow(grid, origin="lower", cmap="viridis", vmin=0, vmax=1, aspect="auto")
    # The 1/2 contour of a discrete grid: the cell edges between p >= 1/2 and p < 1/2.
    for (x0, y0, x1, y1) in _half_edges(grid):
        ax.plot([x0, x1], [y0, y1], color="white", lw=2.5, solid_capstyle="round")
    for j, row in enumerate(grid):
        for i, p in enumerate(row):
            if not math.isnan(p):
                ax.text(i, j, f"{p:.2f}", ha="center", va="center", fontsize=7, color="white" if p < 0.6 else "black")
    ax.set_xticks(range(len(xs)), [_tick(v) for v in xs], rotation=45 if len(xs) > 6 else 0)
    ax.set_yticks(range(len(ys)), [_tick(v) for v in ys])
    ax.set(xlabel=label(x), ylabel=label(y), title=f"{sweep}: success probability (white line: p = 1/2)")
    fig.colorbar(im, ax=ax, label="P(success) over seeds")
    return fig


def plot_curves(store: Store, sweep: str, metric: str = "test_error", trial_ids: list[str] | None = None,
                max_trials: int = 6):
    """Learning curves of a few trials with their detected onsets marked.

    Without `trial_ids`, one trial per cell (its lowest seed), spread over the cells, up to
    `max_trials`. Solid: `metric`; dashed: its train counterpart when recorded; a dotted vertical
    line marks each curve's onset step.
    """
    from paretolab.analysis.phases import transitions

    con = store.connect(sweep)
    try:
        have = metric_names(con)
        if metric not in have:
            raise UsageError(f"unknown metric {metric!r}; recorded: {', '.join(have)}")
        ids = trial_ids or _representatives(con, store, sweep, max_trials)
        train = metric.replace("test_", "train_") if metric.startswith("test_") and metric.replace("test_", "train_") in have else None
        cols = f'step, "{metric}"' + (f', "{train}"' if train else "")
        curves = {t: con.execute(f"SELECT {cols} FROM metrics WHERE trial_id = ? ORDER BY step", [t]).fetchall() for t in ids}
    finally:
        con.close()
    onsets = {r["trial_id"]: r["onset_step"]
              for r in transitions(store, sweep, accuracy=None, train_error=None, test_error=None).to_pylist()}
    info = {r["trial_id"]: r for r in trial_costs(store, sweep).to_pylist()}
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for color, (t, rows) in zip(_colors(len(curves)), curves.items()):
        name = ", ".join(f"{a}={_tick(info[t][a])}" for a in _axes(store, sweep)) if t in info else t
        ax.plot([r[0] for r in rows], [r[1] for r in rows], color=color, lw=1.5, label=name)
        if train:
            ax.plot([r[0] for r in rows[1:]], [r[2] for r in rows[1:]], color=color, lw=1, ls="--")
        if onsets.get(t) is not None:
            ax.axvline(onsets[t], color=color, ls=":", lw=1.2)
    ax.set(xlabel="training step", ylabel=metric.replace("_", " "),
           title=f"{sweep}: learning curves (dashed: train; dotted: onset)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, frameon=False)
    return fig


def plot_luck(store: Store, sweep: str, cost: str = "steps_to_success", by: str | None = "width",
              success: str | None = None):
    """Expected cost to the first success when k seeds run in parallel, against k, per `by` value."""
    from paretolab.analysis.luck import luck

    table = luck(store, sweep, cost=cost, success=success, axes=[by] if by else [])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups = _groups(table, by)
    for color, (key, rows) in zip(_colors(len(groups)), groups):
        rows = [r for r in rows if r["expected_cost"] is not None]
        ax.plot([r["k_seeds"] for r in rows], [r["expected_cost"] for r in rows], "o-", ms=4,
                color=color, label=f"{by}={key}" if by else "all cells")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(xlabel="seeds run in parallel (k)", ylabel=f"expected {label(cost).replace(' to success', '')} to the first success",
           title=f"{sweep}: luck (best of k seeds)")
    ax.grid(True, which="both", alpha=0.3)
    _legend(ax, len(groups))
    return fig


def plot_fit(store: Store, sweep: str, y: str = "steps_to_success", x: str = "n", by: str | None = None,
             success: str | None = None, n_boot: int = 1000):
    """Trials' cost against `x` on log-log axes with the fitted power law and its 95% exponent band."""
    import numpy as np

    from paretolab.analysis.fit import fit, predict

    fits = fit(store, sweep, y=y, x=x, by=[by] if by else None, n_boot=n_boot, success=success).to_pylist()
    points = trial_costs(store, sweep, success=success).to_pylist()
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for color, f in zip(_colors(len(fits)), fits):
        pts = [p for p in points if (by is None or p[by] == f[by]) and p[y] and p[x]]
        ax.plot([p[x] for p in pts], [p[y] for p in pts], "o", color=color, alpha=0.35, ms=4)
        if f["exponent"] is None:
            continue
        xs = np.geomspace(min(p[x] for p in pts), max(p[x] for p in pts), 50)
        name = f"{by}={f[by]}: " if by else ""
        ci = f" [{f['exponent_lo']:.2f}, {f['exponent_hi']:.2f}]" if f.get("exponent_lo") is not None else ""
        ax.plot(xs, predict(f["prefactor"], f["exponent"], xs), color=color, lw=1.8,
                label=f"{name}b = {f['exponent']:.2f}{ci}, censored {f['censored_fraction']:.0%}")
        if f.get("exponent_lo") is not None:
            x0 = float(np.exp(np.mean(np.log([p[x] for p in pts]))))
            y0 = float(predict(f["prefactor"], f["exponent"], x0))
            lo, hi = (y0 * (xs / x0) ** f["exponent_lo"], y0 * (xs / x0) ** f["exponent_hi"])
            ax.fill_between(xs, np.minimum(lo, hi), np.maximum(lo, hi), color=color, alpha=0.15)
    _log_axes(ax, x, y, force=True)
    ax.set(xlabel=label(x), ylabel=label(y), title=f"{sweep}: power-law fit (band: 95% bootstrap interval of b)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return fig


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


def _grid_ticks(ax, values: list, online_x: float | None) -> None:
    """Label the x axis at the grid's own values (and `online` at `online_x`), not at decades."""
    from matplotlib.ticker import NullFormatter

    ticks = values + ([online_x] if online_x is not None else [])
    ax.set_xticks(ticks, [_tick(v) for v in values] + (["online"] if online_x is not None else []),
                  rotation=45 if len(ticks) > 7 else 0)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _log_axes(ax, x: str, y: str, force: bool = False) -> None:
    if force or x in SIZE_AXES:
        ax.set_xscale("log")
    if force or y in SIZE_AXES:
        ax.set_yscale("log")


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


def _tick(v) -> str:
    if v is None:
        return "online"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _axes(store: Store, sweep: str) -> tuple[str, ...]:
    from paretolab.analysis.cells import sweep_info

    con = store.connect(sweep)
    try:
        return sweep_info(con, sweep).axes
    finally:
        con.close()


def _representatives(con, store: Store, sweep: str, max_trials: int) -> list[str]:
    from paretolab.analysis.cells import ident, sweep_info

    axes = sweep_info(con, sweep).axes
    keys = ", ".join(ident(a) for a in axes) or "1"
    rows = con.execute(f"SELECT arg_min(trial_id, seed) FROM trials WHERE status <> 'failed' GROUP BY {keys} "
                       f"ORDER BY {keys}").fetchall()
    ids = [r[0] for r in rows]
    if len(ids) <= max_trials:
        return ids
    step = (len(ids) - 1) / (max_trials - 1) if max_trials > 1 else 1
    return [ids[round(i * step)] for i in range(max_trials)]

"""What every plot shares: styles and sizes, panels, the table behind a figure, saving, colours,
scales and tick labels.

A style is a set of matplotlib rc parameters applied while a figure is made and saved
(`with figure.style("paper", size=(3.5, 2.5)): ...`): `screen` (the default), `paper` (small
fonts, thin lines, embedded TrueType text in PDF and text kept as text in SVG, for a journal
column) and `slide` (large fonts, thick lines). Without a size, a figure is one panel's size per
panel; with one, the whole figure is that size in inches.

Each plot attaches the numbers it draws (`attach`); `data(fig)` returns them as an Arrow table and
`save_data` writes them as CSV, so every figure can be redrawn or checked elsewhere.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from paretolab.analysis.cells import DATA_AXIS
from paretolab.vocabulary.errors import UsageError

OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
FORMATS = (".png", ".svg", ".pdf")
# Grids of sizes, rates and budgets are geometric (16, 64, 256; 1e-3, 1e-2): a factor of 8 (three
# doublings) between the smallest and largest value gets a log axis; narrower ranges read better linear.
LOG_SPAN = 8
NO_TRIAL = "no trial has ended yet"
NO_SUCCESS = "no trial has succeeded yet"
MAX_COLUMNS = 4  # panels per row of a faceted figure

_BASE = {"axes.spines.top": False, "axes.spines.right": False, "axes.grid": False, "legend.frameon": False,
         "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
STYLES = {
    "screen": {**_BASE, "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
               "xtick.labelsize": 9, "ytick.labelsize": 9, "lines.linewidth": 1.5, "lines.markersize": 4.5},
    # a one-column figure of a two-column paper is about 3.3 in wide; 7-8 pt text matches its caption
    "paper": {**_BASE, "font.size": 7.5, "axes.titlesize": 8, "axes.labelsize": 7.5, "legend.fontsize": 6.5,
              "xtick.labelsize": 6.5, "ytick.labelsize": 6.5, "lines.linewidth": 1.1, "lines.markersize": 3.5,
              "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
              "xtick.major.size": 2.5, "ytick.major.size": 2.5, "xtick.minor.size": 1.5, "ytick.minor.size": 1.5,
              "savefig.pad_inches": 0.02},
    "slide": {**_BASE, "font.size": 16, "axes.titlesize": 18, "axes.labelsize": 16, "legend.fontsize": 13,
              "xtick.labelsize": 14, "ytick.labelsize": 14, "lines.linewidth": 3.0, "lines.markersize": 8,
              "axes.linewidth": 1.5, "xtick.major.width": 1.5, "ytick.major.width": 1.5},
}
PANEL_IN = {"screen": (6.4, 4.4), "paper": (3.3, 2.4), "slide": (8.0, 5.4)}
SAVE_DPI = {"screen": 120, "paper": 300, "slide": 150}

_style = contextvars.ContextVar("style", default="screen")
_size = contextvars.ContextVar("size", default=None)
_DATA = "_paretolab_data"


def _plt():
    """pyplot, for code that closes figures through it (a figure made here is not pyplot's: closing
    it there does nothing, and it needs no closing)."""
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def style(name: str = "screen", size: tuple[float, float] | None = None) -> Iterator[None]:
    """Make (and save) figures in style `name`, each `size` inches (width, height) if given.

    Raises:
        UsageError: an unknown style, or a size that is not two positive numbers.
    """
    if name not in STYLES:
        raise UsageError(f"unknown style {name!r}; known: {', '.join(STYLES)}")
    if size is not None and (len(size) != 2 or not all(math.isfinite(s) and 0 < s <= 100 for s in size)):
        raise UsageError(f"a figure size is two numbers of inches in (0, 100], width,height; got {size!r}")
    import matplotlib

    tokens = (_style.set(name), _size.set(tuple(size) if size else None))
    try:
        with matplotlib.rc_context(STYLES[name]):
            yield
    finally:
        _size.reset(tokens[1])
        _style.reset(tokens[0])


def parse_size(text: str) -> tuple[float, float]:
    """`3.5,2.5` (inches) as (3.5, 2.5).

    Raises:
        UsageError: anything else.
    """
    try:
        w, h = (float(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"bad size {text!r}; expected WIDTH,HEIGHT in inches, e.g. 3.5,2.5") from None
    return w, h


def panels(n: int, columns: int | None = None, sharex: bool = False, sharey: bool = False):
    """A figure of `n` panels (`columns` per row, default up to `MAX_COLUMNS`) in the current style:
    (fig, the n axes in order). Unused cells of the last row are removed.

    The figure is made without pyplot: no backend is chosen or changed (in a notebook the user's own
    plots keep theirs), no global list of figures holds it (made on any thread; no closing needed),
    and a notebook cell that ends with it shows it once."""
    import matplotlib
    from matplotlib.figure import Figure

    n = max(1, n)
    cols = columns or min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    w, h = PANEL_IN[_style.get()]
    size = _size.get() or (w if cols == 1 else w * 0.75 * cols, h if rows == 1 else h * 0.8 * rows)
    with matplotlib.rc_context(STYLES[_style.get()]):
        fig = Figure(figsize=size, layout="constrained")
        grid = fig.subplots(rows, cols, squeeze=False, sharex=sharex, sharey=sharey)
    axes = list(grid.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def attach(fig, rows: list[dict] | pa.Table):
    """Keep `rows`, the numbers `fig` draws, on the figure (`data`); returns `fig`."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    setattr(fig, _DATA, table)
    return fig


def data(fig) -> pa.Table:
    """The numbers behind a figure of `plots` (an empty table for a figure with nothing drawn)."""
    table = getattr(fig, _DATA, None)
    return pa.table({}) if table is None else table


def save(fig, path: str | Path, data_path: str | Path | None = None) -> Path:
    """Write `fig` to `path` (.png, .svg or .pdf); with `data_path`, also the table behind it as CSV.

    Raises:
        UsageError: another suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"cannot write a plot as {path.suffix or 'no suffix'!r}; use {', '.join(FORMATS)}")
    if data_path is not None and Path(data_path).suffix.lower() != ".csv":
        raise UsageError(f"the data behind a figure is written as CSV; got {str(data_path)!r}, use a .csv file")
    import matplotlib

    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context(STYLES[_style.get()]):
        fig.savefig(path, dpi=SAVE_DPI[_style.get()], bbox_inches="tight")
    if data_path is not None:
        save_data(fig, data_path)
    return path


def save_data(fig, path: str | Path) -> Path:
    """Write the table behind `fig` as CSV, quoted only where needed (NULL is an empty field, a
    boolean `true`/`false`), and return its path."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = data(fig)
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f, lineterminator="\n")
        if table.num_columns:
            out.writerow(table.column_names)
            out.writerows([_field(v) for v in row.values()] for row in table.to_pylist())
    return path


def _field(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def colors(n: int) -> list:
    """Okabe-Ito for up to 8 lines; beyond, an ordered viridis ramp (lines are usually a size axis).
    Both read with the common colour-vision deficiencies."""
    if n <= len(OKABE_ITO):
        return OKABE_ITO[:n]
    import matplotlib

    return [matplotlib.colormaps["viridis"](i / max(1, n - 1) * 0.9) for i in range(n)]


def legend(ax, entries: int, outside: bool = False, **kwargs) -> None:
    """A legend in the axes, or right of them when it has many entries or `outside` (keeping it off the data)."""
    if entries > 6 or outside:
        kwargs |= {"loc": "upper left", "bbox_to_anchor": (1.01, 1), "fontsize": "x-small"}
    ax.legend(**{"loc": "best", **kwargs})


def empty(fig, ax, text: str):
    """`fig` with `text` in the middle of `ax` (otherwise empty)."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555555", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def subtitle(ax, text: str | None) -> None:
    if text:
        ax.set_title(f"{ax.get_title()}\n{text}", fontsize="small")


def sorted_values(values) -> list:
    """Grid values in order, NULL last (within a tuple too)."""
    def order(v):
        return tuple((e is None, e) for e in v) if isinstance(v, tuple) else (v is None, v)

    return sorted(values, key=order)


def groups(rows: list[dict], by: Sequence[str]) -> list[tuple[tuple, list[dict]]]:
    """`rows` split by their values of `by`, in grid order."""
    keys = sorted_values({tuple(r[b] for b in by) for r in rows})
    return [(k, [r for r in rows if tuple(r[b] for b in by) == k]) for k in keys]


def name(key: tuple, by: Sequence[str]) -> str:
    """`a=1, b=x`: a group's legend entry or panel title."""
    return ", ".join(f"{b}={tick(v, b)}" for b, v in zip(by, key))


def tick(v, axis: str | None = None) -> str:
    """A grid value as a tick label; NULL is `online` for the training-set size (unlimited data)."""
    if v is None:
        return "online" if axis == DATA_AXIS else "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def is_log(values: list) -> bool:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    return bool(numbers) and min(numbers) > 0 and max(numbers) >= LOG_SPAN * min(numbers)


def scale(ax, which: str, values: list) -> None:
    if is_log(values):
        log(ax, which)
    else:
        plain_numbers(ax, which)


def number(v: float) -> str:
    """A tick's number, short: 40, 0.1, 2.5e8 (not 2.5e+08, nor an offset written apart from the axis)."""
    if v == 0 or 1e-3 <= abs(v) < 1e5:
        return f"{v:g}"
    mantissa, exponent = f"{v:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def plain_numbers(ax, which: str) -> None:
    """Tick labels of a linear axis by `number`, without an offset or a x10^n over the axis."""
    from paretolab.analysis.ticks import PlainNumbers

    (ax.xaxis if which == "x" else ax.yaxis).set_major_formatter(PlainNumbers())


def log(ax, which: str, minor_labels: bool = True) -> None:
    from matplotlib.ticker import NullFormatter

    from paretolab.analysis.ticks import PlainLog

    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(PlainLog())
    # a few of them, within a decade (none on a narrow panel over decades, where they would overlap)
    axis.set_minor_formatter(PlainLog(labelOnlyBase=False) if minor_labels else NullFormatter())


def beyond(finite: list, log_scale: bool) -> float:
    """Where the values that are NULL go: right of (or above) the largest value, past a break."""
    if not finite:
        return 1.0
    if log_scale:
        return max(finite) * (3 if len(finite) == 1 else max(2.0, (max(finite) / min(finite)) ** 0.2))
    return max(finite) + (max(finite) - min(finite)) / 4 if len(finite) > 1 else max(finite) + 1


def between(a: float, b: float, log_scale: bool) -> float:
    return math.sqrt(a * b) if log_scale else (a + b) / 2


def grid_ticks(ax, values: list, null_x: float | None, axis: str) -> None:
    """Label the x axis at the grid's own values (and NULL's label at `null_x`), not at decades."""
    from matplotlib.ticker import NullFormatter

    ticks = values + ([null_x] if null_x is not None else [])
    ax.set_xticks(ticks, [tick(v, axis) for v in values] + ([tick(None, axis)] if null_x is not None else []),
                  rotation=45 if len(ticks) > 7 else 0)
    ax.xaxis.set_minor_formatter(NullFormatter())


def axis_break(ax, at: float, which: str = "x") -> None:
    """A break in an axis at `at` (data units): a thin dotted line across the panel and `//` on the
    axis, for the column (or row) of NULL values set apart from the numbers (online training)."""
    from matplotlib.transforms import blended_transform_factory

    if which == "x":
        t = blended_transform_factory(ax.transData, ax.transAxes)
        ax.vlines([at], 0, 1, transform=t, colors="0.55", linestyles=(0, (1.5, 2)), lw=0.8)
        ax.text(at, 0, "//", transform=t, ha="center", va="center", fontsize="small", color="0.3",
                bbox={"fc": "white", "ec": "none", "pad": 0.5}, clip_on=False)
    else:
        t = blended_transform_factory(ax.transAxes, ax.transData)
        ax.hlines([at], 0, 1, transform=t, colors="0.55", linestyles=(0, (1.5, 2)), lw=0.8)
        ax.text(0, at, "//", transform=t, ha="center", va="center", fontsize="small", color="0.3", rotation=90,
                bbox={"fc": "white", "ec": "none", "pad": 0.5}, clip_on=False)

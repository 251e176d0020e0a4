"""Make the figures of docs/gallery.md: two small sweeps run into a temporary store, every figure kind
drawn from them in the paper style, written to docs/gallery/ as PNG with the CSV of the numbers
behind each.

    python docs/make_gallery.py [--store DIR]

`--store DIR` keeps the store (a second run with the same DIR runs nothing and redraws). The
sweeps: examples/quickstart.yaml as it is, and a flip-flop LSTM-vs-Transformer sweep cut down from
examples/flipflop_lstm_vs_transformer.yaml (shorter sequences, fewer steps and seeds) to run on a
laptop's CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import paretolab
from paretolab.analysis import figure, plots

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "gallery"
DPI = 130  # the gallery's PNGs: readable on a screen, each well under 150 KB

FLIPFLOP = """\
sweep: flipflop-small
task: flipflop
task_args: {length: 16}
grid:
  model: [lstm, transformer]
  p_ignore: [0.5, 0.8, 0.9]
model_args:
  lstm: {n_layers: 1, hidden: 32, lr: 0.01}
  transformer: {n_layers: 2, d_model: 32, n_heads: 2, lr: 0.003}
fixed: {batch_size: 32, optimizer: adamw}
seeds: 3
max_steps: 600
eval: {every: 50, test_size: 200}
success: {metric: test_error, op: "<=", value: 0.02, stop_on_success: false}
"""

# (file stem, plot function, keyword arguments, size in inches)
FIGURES = [
    ("frontier", plots.plot_frontier, {"sweep": "quickstart"}, (4.2, 3.0)),
    ("frontier_facet", plots.plot_frontier, {"sweep": "quickstart", "facet": "width"}, (6.4, 2.8)),
    ("phase", plots.plot_phase, {"sweep": "quickstart"}, (4.0, 2.8)),
    ("phase_lines", plots.plot_phase, {"sweep": "flipflop-small", "x": "p_ignore", "by": "model"}, (3.6, 2.6)),
    ("curves", plots.plot_curves, {"sweep": "quickstart", "by": "train_size", "facet": "width"}, (6.4, 2.8)),
    ("curves_flops", plots.plot_curves, {"sweep": "flipflop-small", "by": "model", "facet": "p_ignore",
                                         "x": "flops"}, (6.6, 2.5)),
    ("luck", plots.plot_luck, {"sweep": "quickstart", "by": "train_size"}, (6.4, 2.6)),
    ("fit", plots.plot_fit, {"sweep": "quickstart", "x": "train_size", "by": "width", "n_boot": 200}, (6.4, 2.8)),
    ("frontier_flipflop", plots.plot_frontier, {"sweep": "flipflop-small", "by": "model"}, (4.2, 3.0)),
]


def run_sweeps(store: Path) -> None:
    spec = store.parent / "flipflop-small.yaml"
    spec.write_text(FLIPFLOP)
    for path in (DOCS.parent / "examples" / "quickstart.yaml", spec):
        summary = paretolab.run(path, store=store)
        print(f"{summary.sweep}: {summary.total} trials, {summary.ran} run now", flush=True)


def draw(store: Path) -> None:
    st = paretolab.open_store(store)
    OUT.mkdir(exist_ok=True)
    for stem, plot, kwargs, size in FIGURES:
        with figure.style("paper", size=size):
            fig = plot(st, **kwargs)
            fig.savefig(OUT / f"{stem}.png", dpi=DPI, bbox_inches="tight")
            figure.save_data(fig, OUT / f"{stem}.csv")
            figure._plt().close(fig)
        print(f"wrote {OUT / stem}.png", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, help="keep the store in this folder (default: a temporary one)")
    args = p.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp) / "results"
        store.parent.mkdir(parents=True, exist_ok=True)
        run_sweeps(store)
        draw(store)
    print(f"done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

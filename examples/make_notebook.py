"""Write examples/notebook.ipynb from the cells below, with no outputs: `python examples/make_notebook.py`.

The notebook is edited here, not in Jupyter, so that the committed file holds no outputs and its
diff reads as code; tests/test_notebook.py checks the two agree and executes the notebook.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK = Path(__file__).with_name("notebook.ipynb")

CELLS = [
    ("title", "markdown", """\
# paretolab in a notebook

A small sparse-parity sweep, then the same sweep with one more width (only the new trials run), its
results as data frames, a phase diagram, and a longer run with its progress live in the cell. The
results go to the store `results/` beside the notebook; run the notebook again and nothing trains:
the store already holds every trial."""),
    ("setup", "code", """\
%matplotlib inline
import paretolab
from paretolab.analysis import plots"""),
    ("first-sweep-text", "markdown", """\
## A first sweep

A spec is a dict of the keys a YAML spec has ([docs/specs.md](../docs/specs.md)): (20, 3)-sparse
parity learned by 2-layer MLPs of two widths, online (`None`: a fresh batch every step) and with
200, 500 or 1000 training samples, three seeds each: 24 trials. `paretolab.run` shows its progress
in the cell and ends with the line `paretolab run` prints."""),
    ("first-sweep", "code", """\
spec = {
    "sweep": "notebook",
    "task": "sparse_parity",
    "task_args": {"n": 20, "k": 3},
    "model": "mlp",
    "grid": {"width": [16, 64], "train_size": [None, 200, 500, 1000]},
    "fixed": {"lr": 0.1, "batch_size": 32, "weight_decay": 0.01, "loss": "hinge"},
    "seeds": 3,
    "max_steps": 1500,
    "eval": {"every": 100, "test_size": 500},
    "success": {"metric": "test_error", "op": "<=", "value": 0.1},
}
first = paretolab.run(spec, store="results")"""),
    ("extend-text", "markdown", """\
## Extend it

One more width. A trial's id is a hash of what changes its result, so the store answers for the 24
trials it holds and only the 12 of the new width run."""),
    ("extend", "code", """\
spec["grid"]["width"] = [16, 64, 128]
wider = paretolab.run(spec, store="results")
wider.ran, wider.already_done"""),
    ("query-text", "markdown", """\
## Query the store

`store.trials(sweep)` is one row per trial (its configuration, outcome and costs), `store.metrics`
the curves; both are Arrow tables, `.to_pandas()` makes them data frames. `store.query` runs DuckDB
SQL over the same views."""),
    ("query-trials", "code", """\
store = paretolab.open_store("results")
trials = store.trials("notebook").to_pandas()
trials.pivot_table(index="width", columns="train_size", values="success", aggfunc="mean", dropna=False)"""),
    ("query-curve", "code", """\
# a trial of 200 samples: it fits them (its training loss falls) but its test error stays near 1/2
memorizer = trials[trials.train_size == 200].trial_id.iloc[0]
store.metrics("notebook", trial_ids=[memorizer]).to_pandas()[["step", "train_loss", "test_error"]].tail()"""),
    ("query-sql", "code", """\
store.query("SELECT width, train_size, avg(success::INT) AS p_success, median(steps_to_success) AS steps "
            "FROM trials GROUP BY ALL ORDER BY ALL", sweep="notebook").to_pandas()"""),
    ("plot-text", "markdown", """\
## A phase diagram

The probability of success over width and training-set size, each cell's successes out of its seeds
written in it (`paretolab plot phase` draws the same figure)."""),
    ("plot", "code", """\
plots.plot_phase(store, "notebook")"""),
    ("live-text", "markdown", """\
## A live run

Six seeds per cell instead of three: 36 new trials. The bar above the cell's result is updated in
place as they end. The kernel's interrupt (the stop button) stops the run after writing every result
that arrived to the store and raises `Interrupted`; running the cell again resumes it."""),
    ("live", "code", """\
spec["seeds"] = 6
more = paretolab.run(spec, store="results")
plots.plot_frontier(store, "notebook")"""),
]


def notebook() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(text, id=name) if kind == "markdown" else new_code_cell(text, id=name)
             for name, kind, text in CELLS]
    return new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})


def text() -> str:
    return nbformat.writes(notebook()) + "\n"


if __name__ == "__main__":
    NOTEBOOK.write_text(text())

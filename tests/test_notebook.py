"""examples/notebook.ipynb runs end to end in a real kernel (nbclient, as `jupyter nbconvert
--execute` runs it), in a fresh folder: every cell without an error, each run's progress and final
line in its cell, its figures inline. The committed file is what examples/make_notebook.py writes
(no outputs), so the notebook cannot drift from its source or rot."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

from support import store_count

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
EXECUTE_TIMEOUT_S = 240  # a cell; the whole notebook takes about 20 s on 2 cores


def make_notebook():
    spec = importlib.util.spec_from_file_location("make_notebook", ROOT / "examples" / "make_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebook_is_what_its_source_writes_without_outputs():
    import nbformat

    assert NOTEBOOK.read_text() == make_notebook().text(), "run `python examples/make_notebook.py`"
    nb = nbformat.reads(NOTEBOOK.read_text(), as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_the_example_notebook_runs_end_to_end_with_progress_and_inline_figures(ray_dirs, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Ray down before the kernel exits: ipykernel's shutdown would spend ~30 s terminating its daemons
    nb.cells.append(nbformat.v4.new_code_cell("import ray\nray.shutdown()", id="test-teardown"))
    # the notebook's kernel, python3: `python` in its spec is this interpreter (jupyter_client)
    client = NotebookClient(nb, timeout=EXECUTE_TIMEOUT_S, resources={"metadata": {"path": str(tmp_path)}})
    start = time.monotonic()
    client.execute(env=ray_dirs().env())  # raises CellExecutionError at a cell that fails
    took_s = time.monotonic() - start

    outputs = {c.id: c.outputs for c in nb.cells if c.cell_type == "code"}
    assert not [o for cell in outputs.values() for o in cell if o.output_type == "error"]
    texts = {cell: [o.get("text") or o.get("data", {}).get("text/plain", "") for o in out]
             for cell, out in outputs.items()}
    # each run: its bar (one output, in its last state) and the line `paretolab run` prints
    for cell, ran, before in (("first-sweep", 24, 0), ("extend", 12, 24), ("live", 36, 36)):
        bar = [o for o in outputs[cell] if o.output_type == "display_data" and "text/html" in o.data
               and re.search(rf" {ran}/{ran} running 0 \| ok \d+", o.data["text/plain"])]
        assert len(bar) == 1, texts[cell]
        total = ran + before
        assert any(re.match(rf"notebook: {total} trials \({ran} run now, {before} already in the store\); "
                            r"\d+ succeeded, 0 failed, 0 diverged in", t) for t in texts[cell]), texts[cell]
    assert texts["extend"][-1] == "(12, 24)"
    for cell in ("plot", "live"):  # the phase diagram and the frontier, inline
        assert any("image/png" in o.get("data", {}) for o in outputs[cell]), texts[cell]
    assert "p_success" in texts["query-sql"][0] and "test_error" in texts["query-curve"][0]
    assert store_count(tmp_path / "results") == 72
    print(f"the notebook ran in {took_s:.1f} s")

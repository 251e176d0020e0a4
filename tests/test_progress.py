"""What `paretolab.run` shows while it runs, by where its output goes: a live bar on a terminal, one
output updated in place in a notebook (the real kernel: tests/test_kernel.py), nothing in a script
whose output is a file unless asked (`progress=True`: plain lines), and at the end the line that
`paretolab run` prints first."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from paretolab.orchestrator.events import Counts, Interrupted
from paretolab.progress import ProgressView, wanted


@pytest.mark.parametrize("progress, console, shown", [
    (None, Console(file=io.StringIO()), False),  # a file or a pipe (a job's log, a test runner)
    (None, Console(file=io.StringIO(), force_terminal=True), True),
    (None, Console(file=io.StringIO(), force_jupyter=True), True),
    (True, Console(file=io.StringIO()), True),
    (False, Console(file=io.StringIO(), force_terminal=True), False),
    (False, Console(file=io.StringIO(), force_jupyter=True), False),
])
def test_progress_is_shown_in_a_notebook_or_on_a_terminal_unless_told(progress, console, shown):
    assert wanted(progress, console) is shown


def test_in_a_notebook_the_bar_is_one_output_updated_in_place_and_the_name_is_text(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj, raw):
            shown.append(("update", obj))

    def display(obj, raw, display_id):  # a fake of IPython's display (the real one: tests/test_kernel.py)
        assert raw and display_id is True
        shown.append(("display", obj))
        return Handle()

    monkeypatch.setattr("IPython.display.display", display)
    view = ProgressView(Console(file=io.StringIO(), force_jupyter=True, width=120))
    view.on_start("<b>x</b>[/bold]", counts := Counts(total=4))
    view.on_tick(counts)
    counts.done, counts.succeeded = 2, 1
    view.on_tick(counts)
    view.close()
    assert [kind for kind, _ in shown] == ["display", "update", "update"]
    last = shown[-1][1]
    assert last["text/plain"].startswith("<b>x</b>[/bold] ") and " 2/4 running 0 | ok 1 | " in last["text/plain"]
    assert last["text/html"].startswith("<pre") and "&lt;b&gt;x&lt;/b&gt;[/bold]" in last["text/html"]


def test_interrupted_says_how_to_resume_from_python():
    assert "run the same paretolab.run(...) call again to resume" in str(Interrupted())


SCRIPT = """
import paretolab
spec = {{"sweep": "{name}", "task": "sparse_parity", "task_args": {{"n": 10, "k": 2}}, "model": "mlp",
        "grid": {{"width": {widths}}}, "seeds": 2, "max_steps": 100, "eval": {{"every": 50, "test_size": 64}}}}
paretolab.run(spec, store="r"{progress})
print("ran {name}")
"""


@pytest.mark.slow
def test_a_script_writing_to_a_file_shows_progress_only_when_asked(ray_dirs, tmp_path):
    script = tmp_path / "sweeps.py"
    script.write_text(SCRIPT.format(name="quiet", widths=[16, 32], progress="")
                      + SCRIPT.format(name="told", widths=[24, 48], progress=", progress=True"))
    with open(tmp_path / "out.txt", "w") as out:
        subprocess.run([sys.executable, str(script)], cwd=tmp_path, stdout=out, env=ray_dirs().env(), check=True,
                       timeout=300)
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert lines[0] == "ran quiet", lines  # nothing shown before the first run's end
    told = lines[1:]
    assert told[-1] == "ran told"
    assert told[-2].startswith("told: 4 trials (4 run now, 0 already in the store); ")
    assert told[:-2] and all(line.startswith("done ") for line in told[:-2])
    assert told[-3].startswith("done 4/4, running 0")

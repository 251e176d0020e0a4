"""`paretolab.run` in a real Jupyter kernel (ipykernel, driven by jupyter_client as a notebook's
frontend drives it): the live progress in the cell's output and its final line; the kernel's
interrupt mid-run ends the cell with `Interrupted` saying how to resume, the store keeps what had
arrived, the same call again completes the sweep, and the kernel still interrupts a plain busy cell
with a KeyboardInterrupt afterwards (the run gave back the kernel's own Ctrl-C handling).

The kernel runs its own Ray in a private RAY_TMPDIR; the interrupt comes once the cell's progress
shows a trial ended, not after a delay.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from support import store_count

pytestmark = pytest.mark.slow

WIDTHS, SEEDS, MAX_STEPS, EVERY = [16, 24, 32], 6, 1000, 100
TOTAL = len(WIDTHS) * SEEDS
ROWS_PER_TRIAL = MAX_STEPS // EVERY + 1  # the criterion is never met: every trial runs all its steps
CELL_TIMEOUT_S = 240
RESUME = "run the same paretolab.run(...) call again to resume"


def spec(name: str) -> dict:
    """A sparse-parity sweep of TOTAL trials that runs for several seconds on one worker."""
    return {"sweep": name, "task": "sparse_parity", "task_args": {"n": 10, "k": 2}, "model": "mlp",
            "grid": {"width": WIDTHS}, "fixed": {"lr": 0.1, "batch_size": 32}, "seeds": SEEDS,
            "max_steps": MAX_STEPS, "eval": {"every": EVERY, "test_size": 256},
            "success": {"metric": "test_error", "op": "<=", "value": -1}, "resources": {"pack_size": 1}}


def run_cell(name: str, store: Path) -> str:
    """The cell a notebook's user writes: one `paretolab.run` call."""
    return f"import paretolab\nsummary = paretolab.run({json.dumps(spec(name))}, store={str(store)!r}, workers=1)\n"


class Cell:
    """One executed cell: its iopub messages as they arrive, read until a condition or its end."""

    def __init__(self, client, code: str):
        self.client, self.messages, self.done = client, [], False
        self.msg_id = client.execute(code)

    def read_until(self, condition, what: str, timeout_s: float = CELL_TIMEOUT_S):
        """Read the cell's messages until `condition(self)` holds; fails if the cell ends first."""
        deadline = time.monotonic() + timeout_s
        while not condition(self):
            assert not self.done, f"the cell ended before {what}: {self.summary()}"
            left = deadline - time.monotonic()
            assert left > 0, f"{what}: not seen within {timeout_s} s: {self.summary()}"
            msg = self.client.get_iopub_msg(timeout=left)
            if msg["parent_header"].get("msg_id") != self.msg_id:
                continue
            self.messages.append(msg)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                self.done = True

    def finish(self, timeout_s: float = CELL_TIMEOUT_S) -> Cell:
        """Read the cell's messages to its end (the kernel idle again)."""
        self.read_until(lambda c: c.done, "its end", timeout_s)
        return self

    def of_type(self, *types: str) -> list[dict]:
        return [m["content"] for m in self.messages if m["msg_type"] in types]

    def texts(self) -> list[str]:
        """The text of every output: streams, and the plain text of displays and their updates."""
        return [c.get("text") or c["data"].get("text/plain", "") for c in
                self.of_type("stream", "display_data", "update_display_data", "execute_result")]

    def errors(self) -> list[dict]:
        return self.of_type("error")

    def progress(self) -> list[tuple[int, int]]:
        """(done, total) of each state of the progress bar shown so far."""
        return [(int(m.group(1)), int(m.group(2))) for c in self.of_type("display_data", "update_display_data")
                if (m := re.search(r" (\d+)/(\d+) running", c["data"].get("text/plain", "")))]

    def summary(self) -> str:
        return json.dumps([(m["msg_type"], m["content"]) for m in self.messages[-6:]], default=str)[-3000:]


@pytest.fixture(scope="module")
def kernel(ray_dirs, tmp_path_factory):
    """A Jupyter kernel of this Python (its ipykernel), with a Ray of its own; shut down as a
    notebook server shuts one down (a shutdown request, then its exit)."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3")  # `python` in the spec is this interpreter (jupyter_client)
    km.shutdown_wait_time = 60  # the kernel's exit shuts its Ray down
    km.start_kernel(env=ray_dirs().env(), cwd=str(tmp_path_factory.mktemp("kernel")))
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    yield km, client
    client.stop_channels()
    km.shutdown_kernel()  # (paretolab stops its Ray when the kernel is asked to shut down)


def test_a_run_in_a_kernel_shows_its_progress_live_in_the_cell_and_ends_with_the_cli_headline(kernel, tmp_path):
    km, client = kernel
    cell = Cell(client, run_cell("shown", tmp_path / "r")).finish()

    assert not cell.errors(), cell.errors()
    shown = cell.of_type("display_data")
    updates = cell.of_type("update_display_data")
    bar = [c for c in shown if c.get("transient", {}).get("display_id")]
    assert len(bar) == 1, shown  # one output, updated in place
    display_id = bar[0]["transient"]["display_id"]
    assert updates and all(u["transient"]["display_id"] == display_id for u in updates)
    assert "<pre" in bar[0]["data"]["text/html"] and "text/html" in updates[-1]["data"]
    states = cell.progress()
    assert states[-1] == (TOTAL, TOTAL), states
    assert [done for done, _ in states] == sorted(done for done, _ in states)  # counts only go up
    assert len({done for done, _ in states}) > 2, states  # seen while it ran, not only at its start and end
    last_bar = updates[-1]["data"]["text/plain"]
    assert re.search(rf"{TOTAL}/{TOTAL} running 0 \| ok 0 \| .* trials/s", last_bar), last_bar
    headline = [t for t in cell.texts() if t.startswith("shown: ")]
    assert len(headline) == 1 and re.fullmatch(
        rf"shown: {TOTAL} trials \({TOTAL} run now, 0 already in the store\); 0 succeeded, 0 failed, "
        r"0 diverged in \d+\.\d s\n?", headline[0]), cell.texts()
    assert store_count(tmp_path / "r") == TOTAL


def test_the_kernels_interrupt_stops_the_run_says_how_to_resume_and_the_same_call_completes_it(kernel, tmp_path):
    km, client = kernel
    store = tmp_path / "r"
    code = run_cell("stopped", store)
    cell = Cell(client, code)
    cell.read_until(lambda c: any(done >= 1 for done, _ in c.progress()), "a trial ended")
    km.interrupt_kernel()
    cell.finish()

    errors = cell.errors()
    assert [e["ename"] for e in errors] == ["Interrupted"], cell.summary()
    assert RESUME in errors[0]["evalue"], errors[0]["evalue"]
    seen_done = max(done for done, _ in cell.progress())
    arrived = store_count(store)
    assert seen_done <= arrived < TOTAL  # every trial shown as ended is in the store; the run stopped
    curves = store_count(store, "SELECT count(*) FROM (SELECT trial_id FROM metrics GROUP BY 1 "
                                f"HAVING count(*) = {ROWS_PER_TRIAL} AND count(DISTINCT step) = {ROWS_PER_TRIAL})")
    assert curves >= arrived  # each ended trial's curve is whole

    assert km.is_alive()
    again = Cell(client, code).finish()
    assert not again.errors(), again.summary()
    assert any(re.match(rf"stopped: {TOTAL} trials \({TOTAL - arrived} run now, {arrived} already in the store\)", t)
               for t in again.texts()), again.texts()
    assert store_count(store, "SELECT count(*) FROM trials_all") == TOTAL  # none ran twice

    busy = Cell(client, "print('looping', flush=True)\nwhile True:\n    pass\n")
    busy.read_until(lambda c: any("looping" in t for t in c.texts()), "the loop started")
    km.interrupt_kernel()
    busy.finish(timeout_s=60)
    assert [e["ename"] for e in busy.errors()] == ["KeyboardInterrupt"], busy.summary()
    answer = Cell(client, "40 + 2").finish(timeout_s=60)
    assert [c["data"]["text/plain"] for c in answer.of_type("execute_result")] == ["42"]
    assert km.is_alive()


def test_an_interrupt_after_a_run_interrupted_in_the_same_cell_is_a_keyboard_interrupt(kernel, tmp_path):
    """The run gives back the Ctrl-C handler it found: a second interrupt, in the cell that caught the
    first run's `Interrupted`, stops the cell (the run's own handler would exit the kernel)."""
    km, client = kernel
    code = run_cell("caught", tmp_path / "r").replace("summary = ", "try:\n    summary = ") + (
        "except paretolab.orchestrator.events.Interrupted:\n"
        "    print('looping after the Interrupted', flush=True)\n"
        "    while True:\n"
        "        pass\n")
    cell = Cell(client, code)
    cell.read_until(lambda c: any(done >= 1 for done, _ in c.progress()), "a trial ended")
    km.interrupt_kernel()
    cell.read_until(lambda c: any(t.startswith("looping after") for t in c.texts()), "the run's Interrupted caught")
    km.interrupt_kernel()
    cell.finish(timeout_s=60)
    assert [e["ename"] for e in cell.errors()] == ["KeyboardInterrupt"], cell.summary()
    assert km.is_alive()
    answer = Cell(client, "40 + 2").finish(timeout_s=60)
    assert [c["data"]["text/plain"] for c in answer.of_type("execute_result")] == ["42"]


def test_a_kernel_asked_to_shut_down_stops_its_ray_first(ray_dirs, tmp_path):
    """ipykernel ends its child processes (Ray's among them) with SIGTERM, waits, then SIGKILL, before
    `atexit`: a kernel that had run a sweep took about 30 s to shut down, and Ray's processes printed
    stack traces as they were killed. The warm session stops Ray when the kernel is asked to shut down."""
    from jupyter_client.manager import KernelManager

    rays = ray_dirs()
    km = KernelManager(kernel_name="python3")
    km.shutdown_wait_time = 60
    with (tmp_path / "kernel.err").open("w") as err:
        km.start_kernel(env=rays.env(), cwd=str(tmp_path), stderr=err)
        client = km.client()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=120)
            small = spec("small") | {"grid": {"width": [16]}, "seeds": 2, "max_steps": 100}
            cell = Cell(client, f"import paretolab\nsummary = paretolab.run({json.dumps(small)}, "
                                f"store={str(tmp_path / 'r')!r}, workers=1)\nimport ray\nprint(ray.is_initialized())").finish()
            assert not cell.errors() and any(t.strip().endswith("True") for t in cell.texts()), cell.summary()
            assert rays.processes("raylet")  # Ray is up, kept warm after the run
        finally:
            client.stop_channels()
            km.shutdown_kernel()  # a shutdown request, as a notebook server sends it, then the kernel's exit
    assert not km.is_alive()
    assert not rays.processes(), rays.processes()
    assert "SIGTERM received" not in (tmp_path / "kernel.err").read_text()  # no Ray process was killed by the kernel

"""The worker actor: imports torch once, then trains trial after trial.

One actor per resource slot lives for the whole sweep, so a trial costs no process start and no
import. A call takes a chunk of assignments and streams `Report`s back (a Ray streaming generator):
one whenever `report_every_s` has passed since the last, and one at the end of the chunk.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import ray
import torch

from paretolab.workers.runners import runner
from paretolab.workers.train import matmul_precision
from paretolab.vocabulary.trial import Assignment, MetricRow, Report, TrialResult


class Worker:
    """Trains assignments sequentially on `device` with `num_threads` torch threads.

    Not thread-safe: Ray runs one `run` call of an actor at a time (its default concurrency group
    has one thread), which this relies on; `interrupt` runs beside it, in the `control` group.
    """

    CONCURRENCY_GROUPS = {"control": 1}

    def __init__(self, num_threads: int, report_every_s: float = 1.0, device: str = "cpu"):
        torch.set_num_threads(max(1, num_threads))
        self.report_every_s = report_every_s
        self.device = device
        self.pid, self.node = os.getpid(), ray.get_runtime_context().get_node_id()
        self.interrupted = threading.Event()

    @ray.method(concurrency_group="control")
    def interrupt(self) -> None:
        """Ask the trials running to stop (a function's `ctx.report` answers True, a command's
        `report` too) so that they can save a checkpoint; what they report meanwhile still streams."""
        self.interrupted.set()

    def run(self, units: list[list[Assignment]]):
        """Train `units` in order, each a pack of trials of one shape or a trial alone (as the
        driver's `workers.packing.PackPlan` cut them), and stream a `Report` whenever
        `report_every_s` has passed, and at the end."""
        rows: list[MetricRow] = []
        results: list[TrialResult] = []
        last = time.monotonic()
        for unit in units:
            if self.interrupted.is_set():  # the run is being interrupted: no new trial starts
                break
            run = runner(unit[0].trial)
            items = run.pack(unit, self.device, self.interrupted) if len(unit) > 1 else \
                run.solo(unit[0], self.device, self.interrupted)
            # (a pack's members share their precision: it is part of `pack_key`)
            train = unit[0].trial.train
            with matmul_precision(train.precision, self.device) if train is not None else _nothing():
                for item in items:  # (None: nothing new, a chance to send what waits)
                    if item is not None:
                        (results if isinstance(item, TrialResult) else rows).append(item)
                    if time.monotonic() - last >= self.report_every_s:
                        yield Report(rows, results, self.pid, self.node)
                        rows, results, last = [], [], time.monotonic()
        yield Report(rows, results, self.pid, self.node)


@contextlib.contextmanager
def _nothing():
    yield

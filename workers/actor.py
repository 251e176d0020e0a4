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

    def __init__(self, num_threads: int, report_every_s: float = 1.0, device: str = "cpu",
                 pack_size: int | None = 1):
        torch.set_num_threads(max(1, num_threads))
        self.report_every_s = report_every_s
        self.device = device
        self.pack_size = pack_size  # None: auto
        self.pid, self.node = os.getpid(), ray.get_runtime_context().get_node_id()
        self.interrupted = threading.Event()

    @ray.method(concurrency_group="control")
    def interrupt(self) -> None:
        """Ask the trials running to stop (a function's `ctx.report` answers True, a command's
        `report` too) so that they can save a checkpoint; what they report meanwhile still streams."""
        self.interrupted.set()

    def run(self, assignments: list[Assignment]):
        """Train `assignments`, packing consecutive ones of equal `pack_key` up to `pack_size`, and
        stream a `Report` whenever `report_every_s` has passed, and at the end."""
        rows: list[MetricRow] = []
        results: list[TrialResult] = []
        last = time.monotonic()
        for precision, unit in self._units(assignments):
            if self.interrupted.is_set():  # the run is being interrupted: no new trial starts
                break
            with matmul_precision(precision, self.device) if precision else _nothing():
                for item in unit:  # (None: nothing new, a chance to send what waits)
                    if item is not None:
                        (results if isinstance(item, TrialResult) else rows).append(item)
                    if time.monotonic() - last >= self.report_every_s:
                        yield Report(rows, results, self.pid, self.node)
                        rows, results, last = [], [], time.monotonic()
        yield Report(rows, results, self.pid, self.node)

    def _units(self, assignments: list[Assignment]):
        """(precision, unit): packs of consecutive packable assignments, and solo runs of the rest
        (a pack's members share their precision: it is part of `pack_key`)."""
        i = 0
        while i < len(assignments):
            run = runner(assignments[i].trial)
            key = run.pack_key(assignments[i].trial) if self.pack_size != 1 else None
            j = i + 1
            while key is not None and j < len(assignments) and \
                    runner(assignments[j].trial) is run and run.pack_key(assignments[j].trial) == key:
                j += 1
            group = assignments[i:j]
            # only a packable group needs a pack size (a model without a closed-form `param_count`
            # is built on the meta device for it)
            size = 1 if key is None else run.pack_size(group[0].trial, self.device, self.pack_size)
            for k in range(0, len(group), size):
                chunk = group[k:k + size]
                unit = run.pack(chunk, self.device, self.interrupted) if len(chunk) > 1 else \
                    run.solo(chunk[0], self.device, self.interrupted)
                train = chunk[0].trial.train
                yield (train.precision if train is not None else None), unit
            i = j


@contextlib.contextmanager
def _nothing():
    yield

"""The worker actor: imports torch once, then trains trial after trial.

One actor per resource slot lives for the whole sweep, so a trial costs no process start and no
import. A call takes a chunk of assignments and streams `Report`s back (a Ray streaming generator):
one whenever `report_every_s` has passed since the last, and one at the end of the chunk.
"""

from __future__ import annotations

import os
import time
import traceback

import ray
import torch

from paretolab.workers.packed import pack_key, pack_size_for, train_pack
from paretolab.workers.train import failed, matmul_precision, train
from paretolab.workers.trial import Assignment, MetricRow, Report, TrialResult


class Worker:
    """Trains assignments sequentially on `device` with `num_threads` torch threads.

    Not thread-safe: Ray runs one call of an actor at a time (the default), which this relies on.
    """

    def __init__(self, num_threads: int, report_every_s: float = 1.0, device: str = "cpu",
                 pack_size: int | None = 1):
        torch.set_num_threads(max(1, num_threads))
        self.report_every_s = report_every_s
        self.device = device
        self.pack_size = pack_size  # None: auto
        self.pid, self.node = os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, assignments: list[Assignment]):
        """Train `assignments`, packing consecutive ones of equal `pack_key` up to `pack_size`, and
        stream a `Report` whenever `report_every_s` has passed, and at the end."""
        rows: list[MetricRow] = []
        results: list[TrialResult] = []
        last = time.monotonic()
        for precision, unit in self._units(assignments):
            with matmul_precision(precision, self.device):
                for item in unit:
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
            key = pack_key(assignments[i].trial) if self.pack_size != 1 else None
            j = i + 1
            while key is not None and j < len(assignments) and pack_key(assignments[j].trial) == key:
                j += 1
            group = assignments[i:j]
            # only a packable group needs a pack size (a model without a closed-form `param_count`
            # is built on the meta device for it)
            size = 1 if key is None else pack_size_for(group[0].trial, self.device, self.pack_size)
            for k in range(0, len(group), size):
                chunk = group[k:k + size]
                unit = train_pack(chunk, self.device) if len(chunk) > 1 else _solo(chunk[0], self.device)
                yield chunk[0].trial.train.precision, unit
            i = j


def _solo(a: Assignment, device: str):
    """One trial alone: its metric rows, then its result (failed, with the error, if it raised)."""
    start = time.perf_counter()
    attempt = train(a.trial, a.attempt, device, a.prune)
    try:
        while True:
            yield next(attempt)
    except StopIteration as done:
        yield done.value
    except Exception as e:  # a raising trial is recorded as failed, never retried blindly
        error = "".join(traceback.format_exception_only(e)).strip()
        yield failed(a.trial, a.attempt, error, time.perf_counter() - start)

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

from paretolab.workers.train import failed, train
from paretolab.workers.trial import Assignment, MetricRow, Report, TrialResult


class Worker:
    """Trains assignments sequentially on `device` with `num_threads` torch threads.

    Not thread-safe: Ray runs one call of an actor at a time (the default), which this relies on.
    """

    def __init__(self, num_threads: int, report_every_s: float = 1.0, device: str = "cpu"):
        torch.set_num_threads(max(1, num_threads))
        self.report_every_s = report_every_s
        self.device = device
        self.pid, self.node = os.getpid(), ray.get_runtime_context().get_node_id()

    def run(self, assignments: list[Assignment]):
        rows: list[MetricRow] = []
        results: list[TrialResult] = []
        last = time.monotonic()
        for a in assignments:
            start = time.perf_counter()
            attempt = train(a.trial, a.attempt, self.device)
            try:
                while True:
                    rows.append(next(attempt))
                    if time.monotonic() - last >= self.report_every_s:
                        yield Report(rows, results, self.pid, self.node)
                        rows, results, last = [], [], time.monotonic()
            except StopIteration as done:
                results.append(done.value)
            except Exception as e:  # a raising trial is recorded as failed, never retried blindly
                error = "".join(traceback.format_exception_only(e)).strip()
                results.append(failed(a.trial, a.attempt, error, time.perf_counter() - start))
        yield Report(rows, results, self.pid, self.node)

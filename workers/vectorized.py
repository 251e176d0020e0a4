"""Packing for the researcher's own code: a vectorized variant trains several trials at once.

A spec that sets `vectorized: train.py:main_many` beside `trainable: train.py:main` declares a
function called as `main_many(configs, ctxs)`: a list of trial configs and one `Context` per
member (each member reports, checkpoints and is told to stop through its own), returning a list of
dicts of final metrics (or None). The worker packs consecutive trials whose parameters named by
the spec's `pack_by` are equal (all of the sweep's trials when it names none), up to
`resources.pack_size` members (auto: `AUTO_PACK`). Trials of code without a vectorized variant run
one at a time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

from paretolab.vocabulary.trial import Assignment, MetricRow, TrialConfig, TrialResult
from paretolab.workers.importing import function_of
from paretolab.workers.user_code import run_members

AUTO_PACK = 32  # members per pack under `pack_size: auto`: the code's own cost is unknown here


def pack_key(trial: TrialConfig) -> str | None:
    """None unless the trial's code has a vectorized variant; else its parameters named by `pack_by`."""
    code = trial.code
    if code is None or code.vectorized is None:
        return None
    params = dict(trial.params)
    return json.dumps([code.name, code.digest, [params.get(p) for p in code.pack_by]])


def pack_size_for(trial: TrialConfig, device: str, pack_size: int | None) -> int:
    return pack_size if pack_size is not None else AUTO_PACK


def run_vectorized(assignments: list[Assignment], device: str, interrupted: threading.Event | None = None
                   ) -> Iterator[MetricRow | TrialResult | None]:
    """Train `assignments` (equal `pack_key`) in one call of the vectorized function."""
    code = assignments[0].trial.code

    def call(configs, ctxs):
        values = function_of(code, code.vectorized)(configs, ctxs)
        return [None] * len(configs) if values is None else list(values) if isinstance(values, (list, tuple)) else values

    return run_members(assignments, device, interrupted, call)

"""Trial identity by content: a short hash of the canonical JSON of what changes a trial's result."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from paretolab.workers import RESULT_VERSION

ID_CHARS = 16  # 64 bits: a collision among 10^6 trials has probability ~3e-8


def canonical_json(obj: object) -> str:
    """JSON with sorted keys and no whitespace; NaN and infinities are refused."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def trial_id(task: str, task_args, model: str, model_args, train, seed: int, max_steps: int, eval, success) -> str:
    """The id of the trial with these settings; the sweep name and resources are deliberately absent."""
    return seeded_id(point_content(task, task_args, model, model_args, train, max_steps, eval, success), seed)


def point_content(task: str, task_args, model: str, model_args, train, max_steps: int, eval, success) -> dict:
    """Everything of a trial's identity but its seed (shared by all seeds of a grid point)."""
    return {
        "version": RESULT_VERSION,
        "task": task,
        "task_args": dataclasses.asdict(task_args),
        "model": model,
        "model_args": dataclasses.asdict(model_args),
        "train": dataclasses.asdict(train),
        "max_steps": max_steps,
        "eval": dataclasses.asdict(eval),
        "success": dataclasses.asdict(success),
    }


def seeded_id(content: dict, seed: int) -> str:
    """The id of the trial of `content` (from `point_content`) with seed `seed`."""
    return hashlib.sha256(canonical_json({**content, "seed": seed}).encode()).hexdigest()[:ID_CHARS]

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
    """Everything of a trial's identity but its seed (shared by all seeds of a grid point).

    Each arguments dataclass contributes only its fields that differ from their declared defaults
    (`non_default`): adding a field with a default to `TrainArgs`, a task's or a model's `Args`
    (e.g. `MLPArgs.depth`, `TrainArgs.schedule`) leaves every existing id as it was, and a default
    spelled out in a spec gives the same id as one left out. The flip side: changing a field's
    default changes what an omitted value means, so it must come with a `RESULT_VERSION` bump.
    """
    return {
        "version": RESULT_VERSION,
        "task": task,
        "task_args": non_default(task_args),
        "model": model,
        "model_args": non_default(model_args),
        "train": non_default(train),
        "max_steps": max_steps,
        "eval": non_default(eval),
        "success": non_default(success),
    }


def seeded_id(content: dict, seed: int) -> str:
    """The id of the trial of `content` (from `point_content`) with seed `seed`."""
    return hashlib.sha256(canonical_json({**content, "seed": seed}).encode()).hexdigest()[:ID_CHARS]


def non_default(args) -> dict:
    """The fields of the dataclass instance `args` whose value differs from the field's default
    (a field without a default is always kept)."""
    kept = {}
    for f in dataclasses.fields(args):
        value = getattr(args, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            kept[f.name] = value
            continue
        if not _same(value, default):
            kept[f.name] = value
    return kept


def _same(value, default) -> bool:
    # 0 and 0.0 are one setting; True and 1 are not (a flag is not a count).
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return value == default

"""Trial identity by content: a short hash of the canonical JSON of what changes a trial's result."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re

from paretolab.workers import RESULT_VERSION

ID_CHARS = 16  # 64 bits: a collision among 10^6 trials has probability ~3e-8
ID_BYTES = ID_CHARS // 2  # an id as raw bytes


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
    return _content(task, non_default(task_args), model, non_default(model_args), non_default(train), max_steps,
                    eval, success)


def _content(task: str, task_args, model: str, model_args, train, max_steps: int, eval, success) -> dict:
    return {
        "version": RESULT_VERSION,
        "task": task,
        "task_args": task_args,
        "model": model,
        "model_args": model_args,
        "train": train,
        "max_steps": max_steps,
        "eval": non_default(eval),
        "success": non_default(success),
    }


def code_content(code, params, max_steps: int | None, success) -> dict:
    """Everything of the identity of a trial of the researcher's code but its seed: the code (its
    name, or the command's arguments; the hash of its files, `user_code.digest`; the spec's
    `version`), its parameters, `max_steps` when set and the success criterion (which, with
    `stop_on_success`, decides where the curve ends). Where the code runs, its timeout and its
    checkpoints are not part of it."""
    what = {"kind": code.kind, "digest": code.digest, "version": code.version}
    what.update({"command": list(code.command)} if code.kind == "command" else {"name": code.name})
    content = {"version": RESULT_VERSION, "code": what, "params": params, "success": non_default(success)}
    if max_steps is not None:
        content["max_steps"] = max_steps
    return content


def seeded_id(content: dict, seed: int) -> str:
    """The id of the trial of `content` (from `point_content`) with seed `seed`."""
    return hashlib.sha256(canonical_json({**content, "seed": seed}).encode()).hexdigest()[:ID_CHARS]


class SweepIds:
    """The ids of many trials of one sweep (task, model, `max_steps`, `eval` and `success` fixed), equal
    to `seeded_id(point_content(...), seed)`, at a fraction of its cost: the canonical JSON is cut
    once into the text every trial shares and three holes (the task's, the model's and the training
    arguments, as `part_json` gives them) around the seed. A point fills the holes once, hashes the
    text before the seed once, and each seed costs one copy of that hash state and a short update.
    (Measured on 10^6 trials, 5,000 seeds per point: 0.5 us per trial, where building each id from
    `point_content` in `expand` took 2 us.)
    """

    def __init__(self, task: str, model: str, max_steps: int, eval, success):
        self._cut(lambda holes: _content(task, holes["task_args"], model, holes["model_args"], holes["train"],
                                         max_steps, eval, success), ("task_args", "model_args", "train"))

    @classmethod
    def of_code(cls, code, max_steps: int | None, success) -> SweepIds:
        """The ids of a sweep of the researcher's own code (`code_content`); `point` takes the
        canonical JSON of a point's parameters."""
        ids = cls.__new__(cls)
        ids._cut(lambda holes: code_content(code, holes["params"], max_steps, success), ("params",))
        return ids

    def _cut(self, content, names: tuple[str, ...]) -> None:
        holes = {name: json.dumps("\0" + name + "\0") for name in (*names, "seed")}
        text = canonical_json({**content({n: "\0" + n + "\0" for n in holes}), "seed": "\0seed\0"})
        for hole in holes.values():
            assert text.count(hole) == 1, text
        # a format string with the holes as fields; the text between them (a command's own
        # `{seed}` placeholder, say) is escaped first, so it cannot be taken for a field
        pieces = re.split("(" + "|".join(map(re.escape, holes.values())) + ")", text)
        by_hole = {hole: "{" + name + "}" for name, hole in holes.items()}
        cut = pieces.index(holes["seed"])
        self._names = names
        self._head, self._tail = ("".join(by_hole.get(p) or p.replace("{", "{{").replace("}", "}}") for p in part)
                                  for part in (pieces[:cut], pieces[cut + 1:]))

    def point(self, *parts: str) -> PointIds:
        """The ids of one point, given the `part_json` of its arguments (task, model and training
        arguments; or the parameters of the researcher's code)."""
        parts = dict(zip(self._names, parts))
        return PointIds(hashlib.sha256(self._head.format_map(parts).encode()), self._tail.format_map(parts).encode())


class PointIds:
    """The ids of the trials of one point (see `SweepIds`), by seed."""

    __slots__ = ("head", "tail")

    def __init__(self, head, tail: bytes):
        self.head, self.tail = head, tail

    def raw(self, seed: int) -> bytes:
        """The id of the trial with seed `seed` as `ID_BYTES` bytes (`.hex()` is the id)."""
        h = self.head.copy()
        h.update((b"%d" % seed if type(seed) is int else canonical_json(seed).encode()) + self.tail)
        return h.digest()[:ID_BYTES]

    def content(self) -> bytes:
        """`ID_BYTES` bytes that tell this point's content (everything but the seed) from another's."""
        h = self.head.copy()
        h.update(b"\0" + self.tail)  # no seed is empty: this is no trial's id
        return h.digest()[:ID_BYTES]


def part_json(args) -> str:
    """The canonical JSON of the `non_default` fields of an arguments dataclass: its part of an id."""
    return canonical_json(non_default(args))


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

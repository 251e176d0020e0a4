"""The trainable conformance suite: a researcher's function (`trainable: train.py:main`) run as a
worker runs it, `fn(config, ctx)` in a thread with a real `Context`, without Ray or a store.

`check_trainable(fn, config, metric=...)` checks that the function takes its config and context,
reports the success metric, returns once `ctx.report` says stop, gives one curve for one seed, and,
if it saves checkpoints, that an attempt interrupted after its first checkpoint and run again
resumes from it into the uninterrupted curve. `check_vectorized` checks that a vectorized variant
(`vectorized: train.py:main_many`) gives each member the curve its solo run gives.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
import threading
from dataclasses import dataclass

from paretolab.testing.expect import expect
from paretolab.vocabulary.success import Success
from paretolab.vocabulary.trial import Assignment, Code, MetricRow, TrialConfig, TrialResult
from paretolab.workers.user_code import run_members


@dataclass(frozen=True)
class TrainableRun:
    """What `check_trainable` saw: the uninterrupted run's curve and result, and the step of the
    checkpoint it resumed from (None when the function saves none)."""

    rows: list[MetricRow]
    result: TrialResult
    resumed_at: int | None


def trial_of(config: dict, metric: str, checkpoints: str, name: str = "conformance") -> TrialConfig:
    """The trial of a function with `config` (its `seed` and `max_steps` where it has them): the
    success criterion `metric < -inf` never holds, so the trial runs until `max_steps` or its end."""
    params = tuple(sorted((k, v) for k, v in config.items() if k not in ("seed", "max_steps")))
    trial_id = hashlib.sha256(repr((name, params, config.get("seed"))).encode()).hexdigest()[:16]
    code = Code(kind="function", name=name, checkpoints=checkpoints)
    return TrialConfig(trial_id, None, None, None, None, None, int(config.get("seed", 0)), config.get("max_steps"),
                       None, Success(metric, "<", -math.inf), code, params)


@dataclass
class _Attempt:
    """One attempt's rows, result and what its function saw and was told."""

    rows: list[MetricRow]
    results: list[TrialResult]
    configs: list[dict]
    answers: list[list[bool]]
    loaded: list
    saved: int


def _attempt(call, trials: list[TrialConfig], attempt: int = 1, stop_after_save: bool = False) -> _Attempt:
    """Run `call(configs, ctxs)` as a worker does, watching each context's reports and checkpoints;
    with `stop_after_save`, interrupt the run (as Ctrl-C does) once a checkpoint is saved."""
    interrupted = threading.Event()
    seen = _Attempt([], [], [], [[] for _ in trials], [], 0)

    def watched(configs, ctxs):
        seen.configs.extend(dict(c) for c in configs)
        for i, ctx in enumerate(ctxs):
            ctx.report = _answers(ctx.report, seen.answers[i])
            ctx.load_checkpoint = _loads(ctx.load_checkpoint, seen.loaded)
            ctx.save_checkpoint = _saves(ctx.save_checkpoint, seen, interrupted if stop_after_save else None)
        return call(configs, ctxs)

    for item in run_members([Assignment(t, attempt) for t in trials], "cpu", interrupted, watched):
        if isinstance(item, MetricRow):
            seen.rows.append(item)
        elif isinstance(item, TrialResult):
            seen.results.append(item)
    return seen


def _answers(report, answers: list[bool]):
    def recorded(*args, **kwargs):
        answers.append(report(*args, **kwargs))
        return answers[-1]
    return recorded


def _loads(load, loaded: list):
    def recorded():
        loaded.append(load())
        return loaded[-1]
    return recorded


def _saves(save, seen: _Attempt, interrupt: threading.Event | None):
    def recorded(obj):
        save(obj)
        seen.saved += 1
        if interrupt is not None:
            interrupt.set()
    return recorded


def curve(rows: list[MetricRow]) -> list[tuple]:
    """(step, samples, metrics) of each row: what must repeat (the clock need not)."""
    return [(r.step, r.samples, r.values) for r in rows]


def _expect_ran(run: _Attempt, what: str) -> TrialResult:
    expect(len(run.results) == 1, f"{what}: the function ended without a result (it was interrupted?)")
    result = run.results[0]
    expect(result.status != "failed", f"{what}: the trial failed: {result.error}")
    return result


def check_trainable(fn, config: dict, metric: str, *, deterministic: bool = True) -> TrainableRun:
    """Run `fn(config, ctx)` as a worker does and check the contract of a trainable function.

    Args:
        fn: the function (what `trainable: file.py:fn` names).
        config: its parameters, as a spec's `fixed`/`grid` give them, with `seed` and optionally
            `max_steps` (keep it small: the function runs up to four times).
        metric: the success metric the spec names: the function must report it.
        deterministic: one seed gives one curve (step, samples, every metric); and a resumed attempt
            the uninterrupted curve.
    Returns:
        The uninterrupted run's rows and result, and the step it resumed from (None: no checkpoint).
    Raises:
        ConformanceError: the first part of the contract the function breaks.
    """
    folder = tempfile.mkdtemp(prefix="paretolab-conformance-")
    try:
        return _check(fn, config, metric, deterministic, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check(fn, config: dict, metric: str, deterministic: bool, folder: str) -> TrainableRun:
    call = lambda configs, ctxs: [fn(configs[0], ctxs[0])]  # noqa: E731 - what a worker calls for one trial
    trial = trial_of(config, metric, folder)
    first = _attempt(call, [trial])
    result = _expect_ran(first, "a first attempt")
    expect(first.configs == [trial.config()], f"the function got {first.configs}, not its config {trial.config()}")
    expect(first.rows, "the function reported nothing")
    expect(True not in first.answers[0][:-1], f"the function reported again after ctx.report said stop "
                                              f"(answers: {first.answers[0]})")
    expect(first.loaded in ([], [None]), f"a first attempt loaded a checkpoint: {first.loaded}")
    if trial.max_steps is not None:
        expect(first.rows[-1].step <= trial.max_steps or first.answers[0][-1],
               f"the function went past max_steps {trial.max_steps} to step {first.rows[-1].step}")
    if deterministic:
        again = _attempt(call, [trial_of(config, metric, folder, name="conformance-again")])
        _expect_ran(again, "a second run of the same seed")
        expect(curve(again.rows) == curve(first.rows), "one seed gave two curves")
    if not first.saved:
        return TrainableRun(first.rows, result, None)
    resumed = trial_of(config, metric, folder, name="conformance-resumed")
    cut = _attempt(call, [resumed], stop_after_save=True)
    expect(not cut.results or cut.results[0].status != "failed", f"an interrupted attempt failed: {cut.results}")
    expect(True not in cut.answers[0][:-1], "after an interrupt, the function reported on although ctx.report said stop")
    second = _attempt(call, [resumed], attempt=2)
    _expect_ran(second, "the attempt resumed from the checkpoint")
    expect(second.loaded and second.loaded[0] is not None, "the function did not load its checkpoint on resuming")
    if deterministic:
        expect(curve(second.rows) == curve(first.rows),
               "the resumed attempt's curve is not the uninterrupted one (save every state the rest depends on)")
    return TrainableRun(first.rows, result, _checkpoint_step(second, cut))


def _checkpoint_step(second: _Attempt, cut: _Attempt) -> int | None:
    """The step of the last row carried into the resumed attempt (the checkpoint's)."""
    carried = [r for r in second.rows if any(r.step == c.step and r.wall_s == c.wall_s for c in cut.rows)]
    return carried[-1].step if carried else None


def check_vectorized(fn, fn_many, configs: list[dict], metric: str, rel_tol: float = 1e-5) -> None:
    """`fn_many(configs, ctxs)` (a pack) gives each member the curve and status `fn(config, ctx)`
    gives it alone, within `rel_tol` (batched arithmetic rounds differently).

    Raises:
        ConformanceError: a member's curve or status differs, or the pack failed.
    """
    folder = tempfile.mkdtemp(prefix="paretolab-conformance-")
    try:
        trials = [trial_of(c, metric, folder, name=f"conformance-member-{i}") for i, c in enumerate(configs)]
        pack = _attempt(lambda cs, xs: _per_member(fn_many(cs, xs), len(cs)), trials)
        expect(len(pack.results) == len(trials), f"the pack gave {len(pack.results)} results for {len(trials)} members")
        for t, packed in zip(trials, pack.results):
            expect(packed.status != "failed", f"a member failed in the pack: {packed.error}")
            alone = _attempt(lambda cs, xs: [fn(cs[0], xs[0])], [t])
            solo = _expect_ran(alone, "a member alone")
            mine = [r for r in pack.rows if r.trial_id == t.trial_id]
            expect((packed.status, packed.steps) == (solo.status, solo.steps),
                   f"member {t.config()}: {packed.status} at step {packed.steps} packed, {solo.status} at {solo.steps} alone")
            expect(len(mine) == len(alone.rows) and all(_close(a, b, rel_tol) for a, b in zip(mine, alone.rows)),
                   f"member {t.config()}: its packed curve differs from its solo curve")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _per_member(values, n: int):
    """What a vectorized function returned, per member, as `workers.vectorized.run_vectorized` reads it."""
    return [None] * n if values is None else list(values) if isinstance(values, (list, tuple)) else values


def _close(a: MetricRow, b: MetricRow, rel_tol: float) -> bool:
    if (a.step, a.samples, set(a.values)) != (b.step, b.samples, set(b.values)):
        return False
    return all((v is None and b.values[k] is None) or math.isclose(v, b.values[k], rel_tol=rel_tol, abs_tol=rel_tol)
               for k, v in a.values.items())

"""The researcher's own training code as a trial: a function called as `fn(config, ctx)`.

The function runs in a thread of the worker actor while the actor streams what `ctx.report` sends
(the same `MetricRow`s a built-in trial yields) and ends the trial when the function returns. The
`Context` judges every report by the trial's `Outcome` (success, pruning, divergence) and answers
whether the function should stop; it saves and loads checkpoints, which keep the curve so far: a
trial resumed from a checkpoint re-emits that curve in its new attempt and continues it.

Where things live: a trial's checkpoint is `<checkpoints>/<trial id>/checkpoint.pkl`
(`workers.checkpoints`); its scratch folder (`ctx.workdir`) is `<temp dir>/paretolab-work/<trial id>` on the
worker's node, removed once the attempt has ended (kept when it failed).
"""

from __future__ import annotations

import math
import numbers
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from paretolab.workers.checkpoints import load_checkpoint, save_checkpoint
from paretolab.workers.importing import exception_line, function_of
from paretolab.workers.outcome import Outcome
from paretolab.vocabulary.schema import final_column
from paretolab.vocabulary.trial import Assignment, MetricRow, TrialResult

WORK_FOLDER = "paretolab-work"
HEARTBEAT_S = 0.5  # while a function trains without reporting, the worker looks at its clock this often
# Names a reported metric cannot take: the columns every metric row and trial row already has.
ROW_COLUMNS = frozenset({"trial_id", "attempt", "step", "samples", "wall_s"})


# ---------------------------------------------------------------------------------------------
# where a trial's files live


def workdir(trial_id: str) -> Path:
    """The per-trial scratch folder on this node (created)."""
    path = Path(tempfile.gettempdir()) / WORK_FOLDER / trial_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def drop_workdir(trial_id: str) -> None:
    shutil.rmtree(Path(tempfile.gettempdir()) / WORK_FOLDER / trial_id, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# the context a function is called with


class Context:
    """What a trial's function is given besides its config.

    Attributes:
        seed, trial_id, attempt: the trial's seed, id and attempt number (1 for the first).
        device: the device this worker owns: `cuda` (Ray's CUDA_VISIBLE_DEVICES names the GPU) or `cpu`.
        config: the trial's parameters (the dict the function also receives).
        n_params, flops_per_sample: optional, set by the function: recorded on the trial's row, and
            `flops_per_sample` turns samples into the FLOPs of `flops_to_success`.
    """

    def __init__(self, assignment: Assignment, device: str, interrupted: threading.Event | None = None,
                 out: queue.SimpleQueue | None = None):
        trial = assignment.trial
        self._trial, self._code = trial, trial.code
        self.seed, self.trial_id, self.attempt, self.device = trial.seed, trial.trial_id, assignment.attempt, device
        self.config = trial.config()
        self.n_params: int | None = None
        self.flops_per_sample: float | None = None
        self.outcome = Outcome(trial.success, assignment.prune, trial.max_steps)
        self._interrupted = interrupted or threading.Event()
        self._rows: list[MetricRow] = []  # this attempt's curve, as reported (and resumed)
        self._out = out if out is not None else queue.SimpleQueue()  # the rows, as the worker takes them
        self._start = time.perf_counter()
        self._wall_offset = 0.0
        self._last_step: int | None = None
        self._names = {n.lower() for n in self.config} | {"trainable"}
        self._spelled: dict[str, str] = {}  # each metric reported, by its name in lower case
        self._workdir: Path | None = None
        self.reported: set[str] = set()

    @property
    def workdir(self) -> Path:
        """A scratch folder of this trial on this node (created when first asked for)."""
        if self._workdir is None:
            self._workdir = workdir(self.trial_id)
        return self._workdir

    def report(self, step: int, samples: int | None = None, **metrics) -> bool:
        """Record one metric row at `step` (steps increase) after `samples` training examples; returns
        True when the trial should stop now: it diverged (a NaN or infinite metric), its success
        criterion held under `stop_on_success`, it reached `max_steps`, a search's pruner found it
        hopeless, or the run is being interrupted.

        Raises:
            TypeError, ValueError: a step, sample count or metric that is not a number, a step that
                does not increase, a metric name a result column or a parameter already has.
        """
        step = _count(step, "step")
        samples = None if samples is None else _count(samples, "samples")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(f"ctx.report: step {step} does not increase (the previous report was at step "
                             f"{self._last_step}); report each step once, in order")
        values = {name: self._metric(name, value) for name, value in metrics.items()}
        self._last_step = step
        self._spelled.update((name.lower(), name) for name in values)
        self.reported.update(values)
        row = MetricRow(self.trial_id, self.attempt, step, samples,
                        self._wall_offset + time.perf_counter() - self._start, values)
        self._rows.append(row)
        self._out.put(row)
        self.outcome.see(step, samples, values)
        return self.outcome.status is not None or self._interrupted.is_set()

    def _metric(self, name: str, value) -> float | None:
        """`value` as a metric named `name`, which no column of the result (nor, as column names in
        DuckDB ignore case, a name of another case) has taken, and whose final value's column
        (`final_<name>`) is not a parameter's."""
        folded = name.lower()
        if folded in ROW_COLUMNS or folded in self._names or folded in _RESERVED:
            raise ValueError(f"ctx.report: a metric cannot be named {name!r}: "
                             f"{'a parameter of the trial' if folded in self._names else 'a result column'} "
                             "has that name (column names ignore case); rename the metric")
        if final_column(folded) in self._names:
            raise ValueError(f"ctx.report: a metric cannot be named {name!r}: a parameter of the trial is named "
                             f"{final_column(name)!r}, the column of the metric's final value; rename one of them")
        if self._spelled.get(folded, name) != name:
            raise ValueError(f"ctx.report: metric {name!r} was reported as {self._spelled[folded]!r} before; "
                             "column names ignore case: spell it one way")
        return _number(value, name)

    def should_stop(self) -> bool:
        """Whether the trial should stop (what the last `report` answered, or an interrupt since)."""
        return self.outcome.status is not None or self._interrupted.is_set()

    def save_checkpoint(self, obj) -> None:
        """Keep `obj` (anything picklable: a dict of state_dicts, arrays, the step) as the trial's
        checkpoint, replacing the previous one; with it, the curve reported so far.

        Raises:
            CheckpointError: it cannot be pickled or written.
        """
        rows = [(r.step, r.samples, r.wall_s, r.values) for r in self._rows]
        save_checkpoint(self._code, self.trial_id, {"obj": obj, "rows": rows, "attempt": self.attempt})

    def load_checkpoint(self):
        """The object of the trial's last `save_checkpoint`, or None if it never saved one (a first
        attempt, or an attempt before the first save). A trial resumed this way continues its curve:
        the rows reported up to the checkpoint become this attempt's first rows, and the next report
        must be at a later step.

        Raises:
            CheckpointError: the checkpoint is damaged.
            RuntimeError: called after this attempt has reported (load first, then train).
        """
        if self._rows:
            raise RuntimeError("ctx.load_checkpoint: call it before the attempt's first ctx.report()")
        state = load_checkpoint(self._code, self.trial_id)
        if state is None:
            return None
        for step, samples, wall_s, values in state.get("rows", ()):
            self.carry(MetricRow(self.trial_id, self.attempt, step, samples, wall_s, values))
        self._start = time.perf_counter()
        return state.get("obj")

    def carry(self, row: MetricRow) -> None:
        """Take `row`, a row of an earlier attempt's curve (its step, samples, clock and metrics, as
        this attempt's), as this attempt's next row: what resuming a curve does, before the first report."""
        self._rows.append(row)
        self._out.put(row)
        self._spelled.update((name.lower(), name) for name in row.values)
        self.reported.update(row.values)
        self.outcome.see(row.step, row.samples, row.values)
        self._last_step, self._wall_offset = row.step, row.wall_s


_RESERVED = frozenset({
    "status", "success", "steps_to_success", "samples_to_success", "flops_to_success", "n_params",
    "flops_per_sample", "error", "node", "finished_at", "config", "curve_rows", "seed", "max_steps", "steps",
    "task", "model", "trainable",
})


# the store's `step`, `samples` and `n_params` columns are Parquet int64
MAX_COUNT = 2**63 - 1


def _count(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise TypeError(f"ctx.report: {what} must be an integer >= 0, got {value!r}"[:300])
    if value > MAX_COUNT:
        raise ValueError(f"ctx.report: {what} must be at most 2**63-1 (an int64 column), got {value!r}"[:300])
    return int(value)


def _number(value, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__float__"):
        raise TypeError(f"ctx.report: metric {name!r} must be a number, got {type(value).__name__} {value!r}"[:300])
    try:
        return float(value)
    except (TypeError, ValueError) as e:  # a tensor of more than one element, say
        raise TypeError(f"ctx.report: metric {name!r} must be a single number: {e}"[:300]) from None


# ---------------------------------------------------------------------------------------------
# running one trial


def run_function(a: Assignment, device: str, interrupted: threading.Event | None = None
                 ) -> Iterator[MetricRow | TrialResult | None]:
    """Call the trial's function with its config and a `Context`, yielding its metric rows as it
    reports them (None while it trains without reporting), then its `TrialResult`."""
    def call(configs, ctxs):
        return [function_of(a.trial.code)(configs[0], ctxs[0])]

    return run_members([a], device, interrupted, call)


def run_members(assignments: list[Assignment], device: str, interrupted: threading.Event | None, call
                ) -> Iterator[MetricRow | TrialResult | None]:
    """`call(configs, contexts)` in a thread, returning one value per member (a dict of final metrics
    or None); yields the members' rows as they report them, then each member's result. If it
    raises, every member fails with its error."""
    start = time.perf_counter()
    out: queue.SimpleQueue = queue.SimpleQueue()
    ctxs = [Context(a, device, interrupted, out) for a in assignments]
    done: dict = {}

    def body() -> None:
        try:
            done["values"] = call([dict(c.config) for c in ctxs], ctxs)
        except BaseException as e:  # noqa: BLE001 - recorded as the trial's error
            done["error"] = e
        finally:
            out.put(None)

    thread = threading.Thread(target=body, name=f"trial-{assignments[0].trial.trial_id}", daemon=True)
    thread.start()
    while True:
        try:
            row = out.get(timeout=HEARTBEAT_S)
        except queue.Empty:
            yield None  # the worker sends the rows that wait, while the function trains on
            continue
        if row is None:
            break
        yield row
    thread.join()
    wall = time.perf_counter() - start
    if "error" in done:
        error = done["error"]
        if isinstance(error, SystemExit):
            reason = f"the function called sys.exit({error.code!r}); return from it instead"
        else:
            reason = exception_line(error)
        for a, ctx in zip(assignments, ctxs):
            yield failed_result(a, reason, wall, ctx)
        return
    values = done.get("values")
    if not isinstance(values, list) or len(values) != len(assignments):
        got = f"a list of {len(values)}" if isinstance(values, list) else f"a {type(values).__name__}"
        for a, ctx in zip(assignments, ctxs):
            yield failed_result(a, f"the vectorized function returned {got}; return a list of {len(assignments)} "
                                   "dicts of final metrics (or None), one per config", wall, ctx)
        return
    for a, ctx, value in zip(assignments, ctxs, values):
        yield from _ended(a, ctx, value, wall, interrupted)


def _ended(a: Assignment, ctx: Context, value, wall: float, interrupted) -> Iterator[MetricRow | TrialResult]:
    """How one member ended, given what the function returned for it."""
    if value is not None and not isinstance(value, dict):
        yield failed_result(a, f"the function returned a {type(value).__name__}; return a dict of final metrics "
                               "or None", wall, ctx)
        return
    final = dict(value or {})
    try:
        if final and not ctx._rows:  # nothing reported: what it returned is its one row
            ctx.report(step=final.pop("step", 0), samples=final.pop("samples", None), **final)
            yield ctx._rows[-1]
            ctx._out.get_nowait()
            final = {}
        else:  # final metrics: named and valued as reported ones (a name like `lr` would overwrite the column)
            final = {k: ctx._metric(k, v) for k, v in final.items()}
    except (TypeError, ValueError) as e:
        yield failed_result(a, str(e).replace("ctx.report", "the returned dict"), wall, ctx)
        return
    if interrupted is not None and interrupted.is_set() and ctx.outcome.status is None:
        return  # stopped by an interrupt: the trial has not ended (it runs again on resume)
    metric = a.trial.success.metric
    if metric not in ctx.reported and ctx.outcome.status != "diverged":
        yield failed_result(a, f"the success metric {metric!r} was never reported (reported: "
                               f"{', '.join(sorted(ctx.reported)) or 'none'}); report it, or set success.metric "
                               "to one of those", wall, ctx)
        return
    if (problem := _unrecordable(ctx)) is not None:
        yield failed_result(a, problem, wall, ctx)
        return
    yield ended_result(a, ctx, wall, final)


def _unrecordable(ctx: Context) -> str | None:
    """Why the trial's row cannot hold what the function set on `ctx`, if it cannot (a value of
    another type in a column fails the driver's write of every trial beside it)."""
    n, per_sample = ctx.n_params, ctx.flops_per_sample
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or not 0 <= n <= MAX_COUNT):
        return f"ctx.n_params must be an integer in 0..2**63-1 (or None), got {type(n).__name__} {n!r}"[:300]
    if per_sample is not None and (isinstance(per_sample, (bool, str, bytes)) or not isinstance(per_sample, numbers.Real)
                                   or not math.isfinite(per_sample) or per_sample < 0):
        return f"ctx.flops_per_sample must be a finite number >= 0 (or None), got {type(per_sample).__name__} " \
               f"{per_sample!r}"[:300]
    return None


def ended_result(a: Assignment, ctx: Context, wall: float, final: dict) -> TrialResult:
    """The result of a function's attempt that returned."""
    out = ctx.outcome
    status = out.status if out.status in ("diverged", "pruned") else "finished"
    last = ctx._rows[-1] if ctx._rows else None
    per_sample = ctx.flops_per_sample
    to_success = {}
    if out.first_success is not None:
        samples = out.first_success_samples
        to_success = {"steps_to_success": out.first_success, "samples_to_success": samples,
                      "flops_to_success": float(per_sample) * samples if per_sample is not None and samples is not None
                      else None}
    metrics = {**(last.values if last else {}), **final}
    result = TrialResult(
        trial_id=a.trial.trial_id, attempt=a.attempt, status=status, steps=last.step if last else 0,
        samples=last.samples if last else None, wall_s=wall, success=out.first_success is not None,
        # (a function that goes on reporting after it was told to stop has later final metrics)
        stopped_at_success=out.stopped_at_success and last is not None and last.step == out.first_success,
        n_params=None if ctx.n_params is None else int(ctx.n_params),
        flops_per_sample=None if per_sample is None else float(per_sample), final=metrics, **to_success)
    _tidy(a, ended=True)
    return result


def failed_result(a: Assignment, error: str, wall: float, ctx: Context | None = None) -> TrialResult:
    """The result of an attempt of the researcher's code that raised or was refused."""
    last = ctx._rows[-1] if ctx is not None and ctx._rows else None
    _tidy(a, ended=False)
    return TrialResult(a.trial.trial_id, a.attempt, "failed", last.step if last else 0,
                       last.samples if last else 0, wall, False, error=error)


def _tidy(a: Assignment, ended: bool) -> None:
    """After an attempt: its scratch folder goes unless it failed. (Its checkpoint stays until the
    driver has stored the trial's row: `Scheduler` drops it then, unless the spec keeps checkpoints.)"""
    if ended:
        drop_workdir(a.trial.trial_id)

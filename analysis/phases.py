"""Phase transitions: per-curve transition statistics and per-sweep phase boundaries, in DuckDB.

Per curve (`transitions`), every statistic is where the curve crosses a level set by the curve
itself, so it needs no smoothing and no fitted model, and two aggregate passes over the metrics
(grouped by trial) compute all of them:

- `plateau_steps`: how long the loss stays on its initial plateau: the last evaluated step at which
  the loss is still above `initial - 10% of its total drop` before `onset_step` (initial = its value
  at the first evaluation that records it; total drop = initial - its minimum over the curve). On a
  monotone curve this is the last step before the loss first falls to that level; a noisy dip to
  the level that comes back up does not end the plateau. NULL when the loss never drops by
  `MIN_RELATIVE_DROP` of its initial value: a curve that only wiggles has no plateau to leave.
- `onset_step` (the change point): the first evaluated step where the loss reaches the midpoint of
  its drop, `initial - drop / 2`. Why the midpoint: a mean-shift change point (the best two-segment
  fit) moves with how long the run goes on after the drop, and the steepest interval is decided by
  the noise of one pair of evaluations; the midpoint crossing depends only on the two levels, plateau
  noise does not reach it, and for a symmetric drop it is the drop's centre. onset > plateau.
- `rise_start_step` / `rise_end_step`: where the accuracy rises from 10% to 90% of its rise from its
  initial to its maximum value. rise_end is the first step at the 90% level; rise_start is the step
  after the last evaluation below the 10% level that precedes rise_end (on a monotone curve: the
  first step at the 10% level; plateau noise that touches it earlier does not count). NULL when the
  rise is under `MIN_ACCURACY_RISE`. `sharpness_steps` = rise_end - rise_start.
- `train_fit_step` / `test_fit_step`: the first evaluated steps where train_error / test_error are
  <= a threshold, and `grokking_gap_steps` = test_fit - train_fit (negative when the test error
  gets there first). train_error is the mean over the minibatches since the previous evaluation, so
  train_fit_step lags the true fit by up to one evaluation interval.

Crossing a level is inclusive (<= for a falling loss, >= for a rising accuracy); every step is a
step of the curve's own evaluations, so the resolution is the evaluation interval.

Which metrics: unless named, each comes from what the sweep reported (`transition_metrics`):
the loss is `test_loss`, else a metric with "loss" in its name (a held-out one before a `train_`
one); the accuracy is `test_acc`, else a metric with "acc" in its name, likewise; the test error is
`test_error`, else the sweep's success metric, and then "fitted" means the success criterion holds
(its operator and value); the train error is the `train_` counterpart of the test error's `test_`
name. One the sweep did not report is skipped (its columns stay NULL) and named in the `notes`.

Per sweep (`phase_boundary`): where the success probability of the cells crosses a target (1/2)
along one axis, interpolated in log10 of the axis, for each combination of the other axes.

Trials whose last attempt failed are left out, as in `cells`.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from paretolab.analysis.cells import (SweepInfo, check_axes, columns, costs_sql, ident, open_sweep,
                                      reported_metrics)
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.success import OPS, Success

# A drop smaller than this fraction of the initial loss is noise, not a transition: the test loss
# of a sparse-parity MLP wanders by about +-5% on its plateau (n=12, k=3, width 64, 256 test points).
MIN_RELATIVE_DROP = 0.2
# An accuracy rise (in accuracy units, a fraction in [0, 1]) smaller than this is noise: with 256
# test points the standard error of an accuracy near 1/2 is 0.031, and the maximum of a flat curve
# over 1000 evaluations sits about 3.2 of them (0.1) above its mean; 0.2 leaves a margin.
MIN_ACCURACY_RISE = 0.2
PLATEAU_EXIT = 0.1  # the plateau ends where 10% of the total drop is done
RISE_START, RISE_END = 0.1, 0.9  # the 10%-90% rise time, as for a step response
DEFAULT_FIT_THRESHOLD = 0.1


class _FromSweep:
    def __repr__(self) -> str:
        return "FROM_SWEEP"


FROM_SWEEP = _FromSweep()  # a metric argument left to the sweep's own metrics (module docstring)

TRANSITIONS_SQL = """
WITH m AS (
    SELECT trial_id, step, {loss}::DOUBLE AS loss, {acc}::DOUBLE AS acc,
           {train_error}::DOUBLE AS train_error, {test_error}::DOUBLE AS test_error,
           lead(step) OVER (PARTITION BY trial_id ORDER BY step) AS next_step
    FROM metrics
), ends AS (
    SELECT trial_id,
           arg_min(loss, step) FILTER (WHERE loss IS NOT NULL) AS loss0, min(loss) AS loss_min,
           arg_min(acc, step) FILTER (WHERE acc IS NOT NULL) AS acc0, max(acc) AS acc_max
    FROM m GROUP BY trial_id
), levels AS (
    SELECT trial_id,
           CASE WHEN loss0 > 0 AND loss0 - loss_min >= $min_drop * loss0
                THEN loss0 - $plateau_exit * (loss0 - loss_min) END AS loss_exit,
           CASE WHEN loss0 > 0 AND loss0 - loss_min >= $min_drop * loss0
                THEN loss0 - 0.5 * (loss0 - loss_min) END AS loss_mid,
           CASE WHEN acc_max - acc0 >= $min_rise THEN acc0 + $rise_start * (acc_max - acc0) END AS acc_start,
           CASE WHEN acc_max - acc0 >= $min_rise THEN acc0 + $rise_end * (acc_max - acc0) END AS acc_end
    FROM ends
), x AS (
    SELECT trial_id, any_value(loss_exit) AS loss_exit, any_value(acc_start) AS acc_start,
           min(step) FILTER (WHERE loss <= loss_mid) AS onset_step,
           min(step) FILTER (WHERE acc >= acc_end) AS rise_end_step,
           min(step) FILTER (WHERE isfinite(train_error) AND train_error {fit_op} $threshold) AS train_fit_step,
           min(step) FILTER (WHERE isfinite(test_error) AND test_error {fit_op} $threshold) AS test_fit_step
    FROM m JOIN levels USING (trial_id) GROUP BY trial_id
), y AS (
    -- the last time the curve is still on the near side of the 10% level before it passes the
    -- 50% (loss) or 90% (accuracy) level: a noisy excursion past 10% earlier does not count
    SELECT trial_id,
           max(step) FILTER (WHERE loss > loss_exit AND step < onset_step) AS plateau_steps,
           arg_max(next_step, step) FILTER (WHERE acc < acc_start AND step < rise_end_step) AS rise_start_step
    FROM m JOIN x USING (trial_id) GROUP BY trial_id
)
SELECT t.trial_id, {keys}y.plateau_steps, x.onset_step, y.rise_start_step, x.rise_end_step,
       x.rise_end_step - y.rise_start_step AS sharpness_steps, x.train_fit_step, x.test_fit_step,
       x.test_fit_step - x.train_fit_step AS grokking_gap_steps
FROM trials t LEFT JOIN x USING (trial_id) LEFT JOIN y USING (trial_id)
WHERE t.status <> 'failed'
ORDER BY {keys}t.trial_id
"""

# The success probability of a cell is computed here as in `cells` (successes / non-failed trials),
# not taken from `cells_sql`: its count column `n` collides with an axis named `n` (sparse parity).
BOUNDARY_SQL = """
WITH c AS (
    SELECT {by_select} {axis} AS _x, count(steps_to_success) / count(*) AS _p
    FROM ({costs}) WHERE {axis} IS NOT NULL GROUP BY {by_select} {axis}
), o AS (
    SELECT *, lag(_x) OVER w AS _x_prev, lag(_p) OVER w AS _p_prev
    FROM c WINDOW w AS ({partition} ORDER BY _x)
), g AS (
    SELECT {by_select}
           min(_x) AS _x_first, arg_min(_p, _x) AS _p_first, max(_x) AS _x_last, arg_max(_p, _x) AS _p_last,
           arg_min(_x_prev, _x) FILTER (WHERE _p >= $target AND _p_prev < $target) AS _x_lo,
           arg_min(_p_prev, _x) FILTER (WHERE _p >= $target AND _p_prev < $target) AS _p_lo,
           min(_x) FILTER (WHERE _p >= $target AND _p_prev < $target) AS _x_hi,
           arg_min(_p, _x) FILTER (WHERE _p >= $target AND _p_prev < $target) AS _p_hi
    FROM o {group_by}
), s AS (
    SELECT *, CASE WHEN _p_first >= $target THEN 'always' WHEN _x_hi IS NOT NULL THEN 'crossed'
                   ELSE 'never' END AS _status
    FROM g WHERE _x_first IS NOT NULL
)
SELECT {by_select}
       CASE WHEN _status = 'crossed' THEN pow(10, log10(_x_lo) + ($target - _p_lo) / (_p_hi - _p_lo)
                                                  * (log10(_x_hi) - log10(_x_lo))) END AS boundary,
       CASE _status WHEN 'crossed' THEN _x_lo WHEN 'never' THEN _x_last END AS lower_value,
       CASE _status WHEN 'crossed' THEN _x_hi WHEN 'always' THEN _x_first END AS upper_value,
       CASE _status WHEN 'crossed' THEN _p_lo WHEN 'never' THEN _p_last END AS p_lower,
       CASE _status WHEN 'crossed' THEN _p_hi WHEN 'always' THEN _p_first END AS p_upper,
       _status AS status
FROM s {order_by}
"""


@dataclass(frozen=True)
class TransitionMetrics:
    """The metrics `transitions` reads (None: skipped) and when a train/test error counts as fitted
    (`metric fit_op threshold`); `notes` name what the sweep's metrics could not supply."""

    loss: str | None
    accuracy: str | None
    train_error: str | None
    test_error: str | None
    fit_op: str
    threshold: float
    notes: tuple[str, ...] = ()


Metric = str | None | _FromSweep


def transitions(store: Store, sweep: str, loss: Metric = FROM_SWEEP, accuracy: Metric = FROM_SWEEP,
                train_error: Metric = FROM_SWEEP, test_error: Metric = FROM_SWEEP,
                threshold: float | None = None, success: str | None = None) -> pa.Table:
    """Transition statistics of every curve of `sweep` (definitions in the module docstring).

    Args:
        store: the result store.
        sweep: the sweep's name.
        loss: the falling metric for plateau_steps and onset_step (None: skip, NULL columns;
            FROM_SWEEP: chosen from the sweep's metrics, see `transition_metrics`).
        accuracy: the rising metric, a fraction in [0, 1], for the rise steps (None: skip).
        train_error, test_error: the metrics whose first fit gives the grokking gap (None: skip).
        threshold: the value that counts as fitted; default the criterion's value when the test
            error is its metric or the criterion bounds an error metric from above (e.g.
            `test_error<=0.05`), else 0.1.
        success: a criterion such as `test_error<=0.05`; default the sweep's.
    Returns:
        One row per non-failed trial: trial_id, the sweep's axes, seed, plateau_steps, onset_step,
        rise_start_step, rise_end_step, sharpness_steps, train_fit_step, test_fit_step,
        grokking_gap_steps (NULL where the curve shows no such event, or has no metric rows).
    Raises:
        StoreError: unknown sweep. UsageError: a metric the store does not record, a bad criterion.
    """
    with open_sweep(store, sweep, success) as (con, info, criterion):
        chosen = transition_metrics(con, criterion, loss, accuracy, train_error, test_error, threshold)
        sql, params = transitions_sql(con, info, chosen)
        return con.sql(sql, params=params).to_arrow_table()


def transition_metrics(con: duckdb.DuckDBPyConnection, criterion: Success, loss: Metric = FROM_SWEEP,
                       accuracy: Metric = FROM_SWEEP, train_error: Metric = FROM_SWEEP,
                       test_error: Metric = FROM_SWEEP, threshold: float | None = None,
                       strict: bool = True) -> TransitionMetrics:
    """The metrics `transitions` reads on `con` (restricted to one sweep), each named one checked,
    each FROM_SWEEP one chosen from what the sweep reported (module docstring). With `strict=False`
    a named metric the sweep did not report is skipped instead of refused.

    Raises:
        UsageError: (strict) a named metric the sweep did not report.
    """
    reported = reported_metrics(con)
    named = {"loss": loss, "accuracy": accuracy, "train_error": train_error, "test_error": test_error}
    for key, name in named.items():
        if isinstance(name, str) and name not in reported:
            if strict:
                raise UsageError(f"unknown metric {name!r}; recorded: {', '.join(reported) or 'none yet'}")
            named[key] = None
    notes = [] if reported else ["no metric of the sweep is stored yet: every transition column is empty"]

    def pick(key: str, found: str | None, missing: str) -> str | None:
        if named[key] is not FROM_SWEEP:
            return named[key]
        if found is None and reported:
            notes.append(missing)
        return found

    listed = ", ".join(reported)
    loss = pick("loss", _like(reported, "test_loss", "loss"),
                f"no loss metric (none of {listed} has 'loss' in its name): plateau_steps and onset_step are empty")
    accuracy = pick("accuracy", _like(reported, "test_acc", "acc"),
                    f"no accuracy metric (none of {listed} has 'acc' in its name): the rise steps are empty")
    default_test = "test_error" if "test_error" in reported else \
        criterion.metric if criterion.metric in reported else None
    test = pick("test_error", default_test,
                f"neither test_error nor the success metric {criterion.metric!r} was reported: test_fit_step is empty")
    counterpart = "train_" + test[len("test_"):] if test and test.startswith("test_") else None
    train = pick("train_error", counterpart if counterpart in reported else None,
                 f"no train counterpart of {test or 'the test error'} was reported: train_fit_step and "
                 f"grokking_gap_steps are empty")
    on_success = test == criterion.metric and criterion.op in OPS
    return TransitionMetrics(
        loss, accuracy, train, test, criterion.op if on_success else "<=",
        float(threshold) if threshold is not None else
        float(criterion.value) if on_success else _default_threshold(criterion), tuple(notes))


def transitions_sql(con: duckdb.DuckDBPyConnection, info: SweepInfo, chosen: TransitionMetrics) -> tuple[str, dict]:
    """The SQL and parameters of `transitions` on `con` (restricted to one sweep) for checked metrics."""
    assert chosen.fit_op in OPS
    keys = (*info.axes, *(["seed"] if "seed" in columns(con, "trials") else []))
    metrics = {"loss": chosen.loss, "acc": chosen.accuracy, "train_error": chosen.train_error,
               "test_error": chosen.test_error}
    sql = TRANSITIONS_SQL.format(
        keys="".join(f"t.{ident(k)}, " for k in keys), fit_op=chosen.fit_op,
        **{k: ident(v) if v is not None else "NULL" for k, v in metrics.items()})
    params = {"min_drop": MIN_RELATIVE_DROP, "plateau_exit": PLATEAU_EXIT, "min_rise": MIN_ACCURACY_RISE,
              "rise_start": RISE_START, "rise_end": RISE_END, "threshold": chosen.threshold}
    return sql, params


def _like(reported: list[str], exact: str, part: str) -> str | None:
    """`exact` when reported, else the first reported name holding `part` that is not a `train_` one
    (held out, so it is not the noisy mean over minibatches), else the first holding `part`."""
    if exact in reported:
        return exact
    having = [m for m in reported if part in m.lower()]
    return next((m for m in having if not m.startswith("train")), having[0] if having else None)


def phase_boundary(store: Store, sweep: str, axis: str, by: list[str] | None = None, target: float = 0.5,
                   success: str | None = None) -> pa.Table:
    """Where the success probability crosses `target` along `axis`, per combination of `by`.

    The cells are those of `cells` over `by + [axis]`, with p = successes / non-failed trials.
    Going up the axis (cells whose axis value is NULL, e.g. `train_size` NULL = online, are left
    out), the boundary is the first crossing: the first axis value `hi` with p >= target whose
    predecessor `lo` has p < target, interpolated
    linearly in log10(axis): `10 ** (log10(lo) + (target - p_lo) / (p_hi - p_lo) * (log10(hi) -
    log10(lo)))`. When p is not monotone along the axis, later crossings (and dips back below the
    target) are ignored: the boundary is where success first becomes likely.

    Args:
        store: the result store.
        sweep: the sweep's name.
        axis: a numeric, positive trials column (the log10 interpolation needs > 0).
        by: the axes to split on; default every other axis of the sweep.
        target: the success probability that defines the boundary, in (0, 1).
        success: a criterion such as `test_error<=0.05`; default the sweep's.
    Returns:
        One row per `by` combination: the by axes, boundary, lower_value, upper_value, p_lower,
        p_upper, status. status is 'crossed' (boundary between lower_value and upper_value),
        'always' (p >= target already at the smallest value: boundary NULL, upper_value = that
        value) or 'never' (p < target everywhere: boundary NULL, lower_value = the largest value).
    Raises:
        StoreError: unknown sweep. UsageError: bad axis, target, metric or criterion.
    """
    if not 0 < target < 1:
        raise UsageError(f"target must be a probability in (0, 1), got {target!r}")
    with open_sweep(store, sweep, success) as (con, info, criterion):
        by = tuple(by) if by is not None else tuple(a for a in info.axes if a != axis)
        if axis in by:
            raise UsageError(f"axis {axis!r} cannot also be a --by axis; by: {', '.join(by)}")
        check_axes(con, info, (*by, axis))
        _check_log_axis(con, axis)
        by_select = "".join(f"{ident(b)}, " for b in by)
        sql = BOUNDARY_SQL.format(
            costs=costs_sql(con, criterion), axis=ident(axis), by_select=by_select,
            partition=f"PARTITION BY {by_select[:-2]}" if by else "",
            group_by=f"GROUP BY {by_select[:-2]}" if by else "",
            order_by=f"ORDER BY {by_select[:-2]}" if by else "")
        return con.sql(sql, params={"target": float(target)}).to_arrow_table()


def _default_threshold(success: Success) -> float:
    if success.metric.endswith("error") and success.op in ("<=", "<") and success.value is not None:
        return float(success.value)
    return DEFAULT_FIT_THRESHOLD


def _check_log_axis(con: duckdb.DuckDBPyConnection, axis: str) -> None:
    """The boundary is interpolated in log10(axis): every value must be a positive number."""
    lowest = con.execute(f"SELECT min({ident(axis)}) FROM trials WHERE status <> 'failed'").fetchall()[0][0]
    if lowest is None:
        return
    if isinstance(lowest, bool) or not isinstance(lowest, numbers.Number):
        raise UsageError(f"axis {axis!r} is not numeric (e.g. {lowest!r}); a phase boundary needs a numeric axis")
    if lowest <= 0:
        raise UsageError(f"axis {axis!r} has the value {lowest!r}; the boundary is interpolated in "
                         f"log10({axis}), which needs values > 0")

"""The store's schema: its tables, the columns every layer names, and the rows a run writes.

The orchestrator builds rows with `trial_row` and `metric_row`, the store declares the columns of
`COLUMNS` on its views (so queries on an empty store work), the spec parser keeps parameters off
`RESERVED` names, and the searches and the analysis name results by `COST_COLUMNS` and
`RESULT_METRICS`, and a result's final metrics by `final_column`.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone

from paretolab.vocabulary.trial import MetricRow, TrialConfig, TrialResult

TABLES = ("trials", "metrics", "sweeps")
CHECKPOINTS = "checkpoints"  # the store's folder of checkpoints, unless the spec sets `checkpoint_dir`

# Columns each table's view has even before its first file, with their DuckDB types.
COLUMNS = {
    "trials": (("trial_id", "VARCHAR"), ("attempt", "BIGINT"), ("status", "VARCHAR"), ("success", "BOOLEAN"),
               ("steps", "BIGINT"), ("wall_s", "DOUBLE"), ("stopped_at_success", "BOOLEAN"), ("error", "VARCHAR"),
               ("node", "VARCHAR"), ("finished_at", "TIMESTAMPTZ")),
    "metrics": (("trial_id", "VARCHAR"), ("attempt", "BIGINT"), ("step", "BIGINT"), ("samples", "BIGINT"),
                ("wall_s", "DOUBLE")),
    "sweeps": (("sweep", "VARCHAR"), ("spec", "VARCHAR"), ("path", "VARCHAR"), ("submitted_at", "TIMESTAMPTZ"),
               ("trial_ids", "VARCHAR[]"), ("axes", "VARCHAR[]"), ("parameters", "VARCHAR[]"),
               ("success_metric", "VARCHAR"), ("success_op", "VARCHAR"), ("success_value", "DOUBLE")),
}
CURVE_KEYS = ("trial_id", "attempt", "step", "samples", "wall_s")  # the metrics columns that are not metrics

STATUSES = ("finished", "diverged", "failed", "pruned")  # how an attempt ends (`TrialResult.status`)
COST_COLUMNS = ("steps_to_success", "samples_to_success", "flops_to_success")
RESULT_COLUMNS = (*COST_COLUMNS, "steps", "samples", "wall_s")  # a result's numbers besides its final metrics
# what an objective or a selection rule may name, besides the task's metrics and the parameters
RESULT_METRICS = (*RESULT_COLUMNS, "train_loss", "train_error")
# A trial's final metrics are `trials` columns named `final_<metric>` (`final_test_error`): the
# values at its last evaluation, which under stop-on-success are the first ones past the success
# threshold (`stopped_at_success`), not converged ones; the curve's own name is the `metrics` column.
FINAL_PREFIX = "final_"
# How the analysis and the searches name a median over a cell's seeds (`median_column`).
MEDIAN_PREFIX = "median_"

# Training FLOPs per example: forward + backward is about 6 x parameters per token (Kaplan et al.
# 2020, "Scaling Laws for Neural Language Models", Sec. 2.1). The workers record it per trial as
# `flops_per_sample` (x tokens for sequence tasks); the analysis falls back on it for older stores.
FLOPS_PER_PARAM_PER_TOKEN = 6

# Columns of the `trials` and `metrics` tables that no parameter may shadow once flattened.
RESERVED = frozenset({
    "trial_id", "attempt", "status", "task", "model", "seed", "max_steps", "steps", "samples", "wall_s",
    "success", "steps_to_success", "samples_to_success", "flops_to_success", "n_params", "flops_per_sample",
    "stopped_at_success", "error", "node",
    "finished_at", "config", "curve_rows", "step", "train_loss", "train_error",
    # and the statistics the analysis adds beside the axes (cells, luck)
    "n_seeds", "successes", "p_success", "p_lo", "p_hi", "k_seeds", "p_any_success", "expected_cost",
    "expected_total_cost", "seeds_for_target", "on_frontier",
    *(MEDIAN_PREFIX + c for c in COST_COLUMNS),
})


def final_column(metric: str) -> str:
    """The `trials` column of `metric`'s final value: `final_test_error` for `test_error`."""
    return FINAL_PREFIX + metric


def median_column(cost: str) -> str:
    """The analysis's column of the per-cell median of a per-trial cost: `median_steps_to_success`."""
    return MEDIAN_PREFIX + cost


def result_column(name: str) -> str:
    """The `trials` column holding the result an objective or a selection rule names: the column
    itself for a cost, `steps`, `samples` or `wall_s`; else the metric's final value (`final_column`)."""
    return name if name in RESULT_COLUMNS else final_column(name)


def metric_row(r: MetricRow) -> dict:
    """The `metrics` row of one evaluation."""
    return {"trial_id": r.trial_id, "attempt": r.attempt, "step": r.step, "samples": r.samples,
            "wall_s": r.wall_s, **r.values}


def trial_row(config: TrialConfig, result: TrialResult, node: str, curve_rows: int) -> dict:
    """The `trials` row of one ended attempt: its config flattened, its result (`stopped_at_success`
    included), its final metrics as `final_<metric>` columns, where it ran, and `curve_rows`, the
    number of metric rows its attempt reported."""
    row = dataclasses.asdict(result)
    final = {final_column(k): v for k, v in row.pop("final").items()}
    content = {k: v for k, v in dataclasses.asdict(config).items() if k != "trial_id"}
    return {
        "trial_id": result.trial_id, "attempt": result.attempt, "status": result.status,
        **config.columns(), **{k: v for k, v in row.items() if k not in ("trial_id", "attempt", "status")},
        **final, "node": node, "finished_at": datetime.now(timezone.utc),
        "config": json.dumps(content, sort_keys=True), "curve_rows": curve_rows,
    }


def empty_select(table: str) -> str:
    """`NULL::TYPE AS column, ...` for the columns of `table`: what its view selects before any file."""
    return ", ".join(f"NULL::{kind} AS {name}" for name, kind in COLUMNS[table])

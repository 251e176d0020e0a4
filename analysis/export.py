"""Export one sweep as a compacted, self-describing Parquet copy that any Parquet reader opens."""

from __future__ import annotations

import json
import os
from pathlib import Path

from paretolab.analysis.cells import sweep_info
from paretolab.store import Store
from paretolab.store.store import _sql_str
from paretolab.vocabulary.errors import StoreError

DESCRIPTION = {
    "trials.parquet": "one row per trial (its latest attempt): trial_id, config columns, status "
                      "(finished/diverged/failed/pruned), steps, samples, wall_s, success, stopped_at_success "
                      "(stop-on-success ended it: its final metrics are its first success's), "
                      "steps/samples/flops_to_success, n_params, final_<metric> (its last evaluation), node, error",
    "metrics.parquet": "the learning curves: trial_id, attempt, step, samples, wall_s, one column per metric",
    "sweep.parquet": "the sweep: name, spec as submitted, trial ids, axes, parameters, success criterion",
}


def export(store: Store, sweep: str, out: str | Path) -> dict[str, int]:
    """Write `trials.parquet`, `metrics.parquet` and `sweep.parquet` of `sweep` into folder `out`.

    Each file carries key-value metadata (`paretolab.sweep`, `paretolab.axes`, `paretolab.success`,
    `paretolab.description`). Existing files of those names are replaced atomically.

    Returns:
        Rows written per file.
    Raises:
        StoreError: unknown sweep, or `out` cannot be written.
    """
    out = Path(out)
    con = store.connect(sweep, writes_files=True)
    try:
        info = sweep_info(con, sweep)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create {out}: {e.strerror}; pass -o a folder you can write") from None
        queries = {
            "trials.parquet": "SELECT * FROM trials ORDER BY trial_id",
            "metrics.parquet": "SELECT * FROM metrics ORDER BY trial_id, step",
            "sweep.parquet": f"SELECT * FROM sweeps WHERE sweep = '{_sql_str(sweep)}'",
        }
        meta = {"paretolab.sweep": sweep, "paretolab.axes": json.dumps(list(info.axes)),
                "paretolab.success": f"{info.success.metric} {info.success.op} {info.success.value}"}
        counts = {}
        for name, sql in queries.items():
            kv = {**meta, "paretolab.description": DESCRIPTION[name]}
            kv_sql = ", ".join(f"'{_sql_str(k)}': '{_sql_str(v)}'" for k, v in kv.items())
            tmp = out / f".{name}.tmp"
            counts[name] = con.execute(f"COPY ({sql}) TO '{_sql_str(str(tmp))}' "
                                       f"(FORMAT parquet, KV_METADATA {{{kv_sql}}})").fetchall()[0][0]
            os.replace(tmp, out / name)
        return counts
    except OSError as e:
        raise StoreError(f"cannot write the export to {out}: {e.strerror}") from None
    finally:
        con.close()

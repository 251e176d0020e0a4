"""The tables the pages show, each aggregated in DuckDB through `paretolab.analysis`.

Every function takes the store and a sweep (a name, or several names compared side by side, as
`cells.open_sweep` takes them) and returns a small JSON-ready dict: at most a row per cell, group
or error kind, never the curves' rows. Names a request chooses (an axis, a column to sort by, a
filter) are checked against the sweep's own before any SQL is built, and values travel as SQL
parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Mapping, Sequence

from paretolab.analysis.cells import (COMPARED, check_axes, check_metric, columns, cells_sql, default_cost,
                                      ident, numeric_axes, open_sweep, reported_metrics)
from paretolab.analysis.curve_memo import POOL, pooled_metrics
from paretolab.analysis.phases import transition_metrics, transitions_sql
from paretolab.analysis.status import status
from paretolab.store import Store
from paretolab.vocabulary.errors import StoreError, UsageError
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN

Sweep = str | Sequence[str]
NULL = "__null__"  # a filter's value for NULL (online training's train_size, a parameter a trial lacks)
MAX_VALUES = 200  # distinct values of a parameter offered as a filter
PAGE_ROWS = 500  # cells per page of the cells table, at most
CURVE_X = ("step", "samples", "flops")
# Curves over samples or FLOPs: trials of a group need not share x values (widths differ in FLOPs
# per sample), so each trial's last value in each of this many log-spaced bins is taken, then the
# median and quartiles over the trials of the group in that bin.
CURVE_BINS = 120
CURVE_TRIALS = 256  # trials a group's band is drawn from, at most (`curve_bands`)
FAILURE_KINDS = 50  # distinct errors listed
SPEC_CHARS = 200_000


def jsonable(v):
    """`v` as JSON can hold it: NaN and infinities as None, times as ISO text, lists recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (_dt.datetime, _dt.date)):
        return v.isoformat()
    if isinstance(v, _dt.timedelta):
        return v.total_seconds()
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    return v


def _rows(rel) -> tuple[list[str], list[list]]:
    table = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel
    return table.column_names, [[jsonable(v) for v in row.values()] for row in table.to_pylist()]


def sweeps(store: Store) -> dict:
    """Every sweep of the store with its counts, throughput, ETA and progress (`analysis.status`)."""
    if not store.exists():  # a page opened before the run that writes the store: it fills in as the store appears
        return {"sweeps": [], "why": f"no result store at {store.uri} yet: this page fills in once a run writes it"}
    known = store.query("SELECT sweep, submitted_at FROM sweeps ORDER BY sweep").to_pylist()
    rows = {s.sweep: s for s in status(store)} if known else {}
    out = []
    for k in known:
        s = rows.get(k["sweep"])
        counts = ({"total": s.total, "ended": s.ended, "succeeded": s.succeeded, "failed": s.failed,
                   "diverged": s.diverged, "pruned": s.pruned, "running": s.started,
                   "rate_per_s": jsonable(s.rate_per_s), "eta_s": jsonable(s.eta_s)} if s else
                  {"total": 0, "ended": 0, "succeeded": 0, "failed": 0, "diverged": 0, "pruned": 0, "running": 0,
                   "rate_per_s": None, "eta_s": None})
        counts["progress"] = counts["ended"] / counts["total"] if counts["total"] else 1.0
        out.append({"sweep": k["sweep"], "submitted_at": jsonable(k["submitted_at"]), **counts})
    return {"sweeps": out}


def meta(store: Store, sweep: Sweep) -> dict:
    """What a sweep page offers to choose from: the axes and parameters with their values, the
    numeric axes, the metrics, the success criterion, and the default choices."""
    with open_sweep(store, sweep) as (con, info, criterion):
        have = set(columns(con, "trials"))
        params = [n for n in info.names() if n in have] if info.parameters else \
            [c for c in info.axes if c in have]
        values = {}
        if params:
            lists = con.execute("SELECT " + ", ".join(
                f"list_transform(list_sort(list(DISTINCT {ident(p)}) FILTER ({ident(p)} IS NOT NULL)), lambda v: v::VARCHAR), "
                f"bool_or({ident(p)} IS NULL)" for p in params) + " FROM trials").fetchall()[0]
            for i, p in enumerate(params):
                shown = list(lists[2 * i] or [])[:MAX_VALUES]
                values[p] = [*shown, *([None] if lists[2 * i + 1] else [])]
        numeric = list(numeric_axes(con, info))
        leading = list(info.leading_axes())
        metrics = reported_metrics(con)
        cost = default_cost(con)
    return {
        "sweep": info.name, "compared": info.compared, "axes": list(info.axes), "parameters": params,
        "values": values, "numeric_axes": numeric, "metrics": metrics or [criterion.metric],
        "success": f"{criterion.metric} {criterion.op} {criterion.value:g}", "cost": cost,
        "defaults": {"x": leading[0] if leading else None, "y": leading[1] if len(leading) > 1 else None,
                     "by": next((a for a in leading if a != (numeric[0] if numeric else None)), None),
                     "frontier_x": numeric[0] if numeric else None, "metric": criterion.metric},
    }


def sweep_status(store: Store, sweep: Sweep) -> dict:
    """The counts of each sweep of `sweep` (one row per sweep of a comparison)."""
    names = [sweep] if isinstance(sweep, str) else list(sweep)
    with open_sweep(store, names if len(names) > 1 else names[0]) as (_, info, _c):
        listed = info.name.split(",") if info.compared else [info.name]
    every = {s["sweep"]: s for s in sweeps(store)["sweeps"]}
    return {"sweeps": [every[n] for n in listed if n in every]}


def cells_table(store: Store, sweep: Sweep, sort: str | None = None, descending: bool = False,
                filters: Mapping[str, str] | None = None, limit: int = 100, offset: int = 0) -> dict:
    """The cells of the sweep (`cells.cells_sql` over its axes), of the trials that match every
    filter (parameter -> value as text, `NULL` for NULL), sorted by a column of the table.

    Raises:
        UsageError: an unknown parameter or column, a bad limit or offset.
    """
    if not (1 <= limit <= PAGE_ROWS) or offset < 0:
        raise UsageError(f"a page of cells holds 1 to {PAGE_ROWS} rows from offset >= 0; got limit {limit}, offset {offset}")
    filters = dict(filters or {})
    with open_sweep(store, sweep) as (con, info, criterion):
        check_axes(con, info, list(filters))
        if filters:
            conds = " AND ".join(f"{ident(p)} IS NULL" if v == NULL else f"{ident(p)}::VARCHAR = ?"
                                 for p, v in filters.items())
            con.execute(f"CREATE TEMP TABLE _kept AS SELECT * FROM trials WHERE {conds}",
                        [v for v in filters.values() if v != NULL])
            con.execute("CREATE OR REPLACE TEMP VIEW trials AS SELECT * FROM _kept")
        con.execute(f"CREATE TEMP TABLE _cells AS {cells_sql(con, info.axes, criterion)}")
        names = columns(con, "_cells")
        if sort is not None and sort not in names:
            raise UsageError(f"cannot sort the cells by {sort!r}; columns: {', '.join(names)}")
        order = (f"{ident(sort)} {'DESC' if descending else 'ASC'} NULLS LAST, " if sort else "") + \
            ", ".join(ident(a) for a in info.axes if a in names)
        total = con.execute("SELECT count(*) FROM _cells").fetchall()[0][0]
        head, rows = _rows(con.sql(f"SELECT * FROM _cells {'ORDER BY ' + order if order.strip(', ') else ''} "
                                   f"LIMIT {int(limit)} OFFSET {int(offset)}"))
    return {"columns": head, "rows": rows, "total": total, "axes": list(info.axes)}


def curve_bands(store: Store, sweep: Sweep, by: str | None = None, x: str = "step", metric: str | None = None) -> dict:
    """Per group of `by` (and sweep, in a comparison): the median and quartiles over its trials of
    `metric` (default the success metric) at each x, while at least half of its trials report.

    A group of more than `CURVE_TRIALS` ended trials is drawn from that many of them, the same at
    every update (the first by a hash of their ids): quartiles over seeds need no more, and exact
    quantiles of every row of a 10^7-row store took seconds. Where the store is read through
    `SharedSnapshots`, they are drawn from the pool of curves it keeps (`curve_memo.POOL_SIZE`
    trials of each sweep, every trial of a smaller one).

    Raises:
        UsageError: an unknown axis, metric or x.
    """
    if x not in CURVE_X:
        raise UsageError(f"curves are aligned on {', '.join(CURVE_X)}; got {x!r}")
    with open_sweep(store, sweep) as (con, info, criterion):
        metric = check_metric(con, info, metric or criterion.metric)
        keys = list(info.grouped(check_axes(con, info, [by]) if by else ()))
        out = {"sweep": sweep if isinstance(sweep, str) else list(sweep), "metric": metric, "x": x, "keys": keys, "rows": []}
        if metric not in columns(con, "metrics"):
            return {**out, "why": "no curve has a row yet"}
        size = _flops_per_sample(con) if x == "flops" else "NULL"
        if (x != "step" and "samples" not in columns(con, "metrics")) or size is None:
            return {**out, "why": f"no curve records its {'samples' if x == 'samples' else 'size (FLOPs per sample)'}; align on step"}
        at = {"step": "m.step", "samples": "m.samples::DOUBLE", "flops": "m.samples * k._size"}[x]
        g = "".join(f"t.{ident(k)} AS _k{i}, " for i, k in enumerate(keys))
        gk = "".join(f"_k{i}, " for i in range(len(keys)))
        by_g = f"PARTITION BY {gk.rstrip(', ')} " if keys else ""
        source, pooled = _curves(con)
        kept = (f"SELECT {g}t.trial_id, {size} AS _size FROM trials t WHERE t.status <> 'failed'{pooled} "
                f"QUALIFY row_number() OVER ({by_g}ORDER BY hash(t.trial_id), t.trial_id) <= {CURVE_TRIALS}")
        base = (f"SELECT {gk}m.trial_id, {at} AS x, m.{ident(metric)} AS v FROM {source} m JOIN k USING (trial_id) "
                f"WHERE isfinite(m.{ident(metric)}) AND {at} IS NOT NULL")
        if x == "step":
            points = f"SELECT {gk}trial_id, x, v FROM r"
        else:  # the last value of each trial in each log-spaced bin of x, placed at the bin's centre
            points = (f"SELECT {gk}trial_id, exp(lo + round((ln(x) - lo) / span * {CURVE_BINS - 1}) * span / {CURVE_BINS - 1}) AS x, "
                      f"arg_max(v, x) AS v FROM r, (SELECT ln(min(x)) AS lo, greatest(ln(max(x)) - ln(min(x)), 1e-9) AS span "
                      f"FROM r WHERE x > 0) b WHERE r.x > 0 GROUP BY ALL")
        join = f"JOIN n USING ({gk.rstrip(', ')})" if keys else ", n"
        sql = (f"WITH k AS ({kept}), r AS ({base}), p AS ({points}), n AS (SELECT {gk}count(DISTINCT trial_id) AS trials "
               f"FROM r {'GROUP BY ' + gk.rstrip(', ') if keys else ''}) "
               f"SELECT {gk}x, median(v) AS median, quantile_cont(v, 0.25) AS q1, quantile_cont(v, 0.75) AS q3, "
               f"count(*) AS reporting, any_value(n.trials) AS trials FROM p {join} "
               f"GROUP BY {gk}x HAVING count(*) * 2 >= any_value(n.trials) ORDER BY {gk}x")
        rows = [[jsonable(v) for v in r] for r in con.execute(sql).fetchall()]
    return {**out, "rows": rows, "why": None if rows else "no trial has ended yet"}


def _curves(con) -> tuple[str, str]:
    """Where a sample of curves is drawn from: the pool of curves where the database keeps one
    (`curve_memo`), else every curve; and the condition that keeps a trial of `trials t` to it."""
    pooled = pooled_metrics(con, columns(con, "metrics"))
    return (pooled, f" AND t.trial_id IN (SELECT trial_id FROM main.{POOL})") if pooled else ("metrics", "")


def _flops_per_sample(con) -> str | None:
    """The SQL of a trial's training FLOPs per sample (None: the trials record no size)."""
    have = columns(con, "trials")
    sizes = (["t.flops_per_sample"] if "flops_per_sample" in have else []) + \
        ([f"{FLOPS_PER_PARAM_PER_TOKEN}::DOUBLE * t.n_params"] if "n_params" in have else [])
    return f"coalesce({', '.join(sizes)})" if sizes else None


def transitions_summary(store: Store, sweep: Sweep, by: str | None = None) -> dict:
    """Per group of `by`: its ended curves, and the median plateau, onset, sharpness and grokking
    gap (`phases.transitions`) over up to `CURVE_TRIALS` of them, chosen as `curve_bands` does
    (per-curve statistics of every curve of a 10^7-row store took several seconds)."""
    with open_sweep(store, sweep) as (con, info, criterion):
        keys = list(info.grouped(check_axes(con, info, [by]) if by else ()))
        chosen = transition_metrics(con, criterion)
        k = ", ".join(ident(c) for c in keys)
        counts = {tuple(jsonable(v) for v in r[:-1]): r[-1] for r in con.execute(
            f"SELECT {k + ', ' if k else ''}count(*) FROM trials WHERE status <> 'failed' {'GROUP BY ALL' if k else ''}").fetchall()}
        source, pooled = _curves(con)
        con.execute(f"CREATE TEMP TABLE _kept_trials AS SELECT * FROM trials t WHERE status <> 'failed'{pooled} QUALIFY row_number() "
                    f"OVER ({'PARTITION BY ' + k + ' ' if k else ''}ORDER BY hash(trial_id), trial_id) <= {CURVE_TRIALS}")
        con.execute(f"CREATE TEMP TABLE _kept_metrics AS SELECT * FROM {source} WHERE trial_id IN (SELECT trial_id FROM _kept_trials)")
        con.execute("CREATE OR REPLACE TEMP VIEW trials AS SELECT * FROM _kept_trials")
        con.execute("CREATE OR REPLACE TEMP VIEW metrics AS SELECT * FROM _kept_metrics")
        sql, params = transitions_sql(con, info, chosen)
        stats = ", ".join(f"median({c}) AS median_{c}" for c in
                          ("plateau_steps", "onset_step", "sharpness_steps", "grokking_gap_steps"))
        head, rows = _rows(con.sql(f"SELECT {k + ', ' if k else ''}count(*) AS sampled, count(onset_step) AS with_onset, {stats} "
                                   f"FROM ({sql}) {'GROUP BY ' + k + ' ORDER BY ' + k if k else ''}", params=params))
    n = len(keys)
    rows = [[*r[:n], counts.get(tuple(r[:n])), *r[n:]] for r in rows]
    notes = [f"loss: {chosen.loss or 'none'}", f"accuracy: {chosen.accuracy or 'none'}",
             f"medians over up to {CURVE_TRIALS} curves per group"]
    return {"columns": [*head[:n], "curves", *head[n:]], "rows": rows, "notes": notes}


def failures(store: Store, sweep: Sweep) -> dict:
    """The errors of the failed trials, most frequent first, with up to 5 trial ids each."""
    with open_sweep(store, sweep) as (con, info, _):
        head, rows = _rows(con.sql(
            "SELECT error, count(*) AS trials, list(trial_id ORDER BY trial_id)[1:5] AS examples FROM trials "
            f"WHERE status = 'failed' GROUP BY error ORDER BY trials DESC, error LIMIT {FAILURE_KINDS}"))
        total = con.execute("SELECT count(*) FROM trials WHERE status = 'failed'").fetchall()[0][0]
    return {"columns": head, "rows": rows, "total": total}


def specs(store: Store, sweep: Sweep) -> dict:
    """The spec text of each sweep of `sweep`, as submitted last."""
    with open_sweep(store, sweep) as (con, info, _):
        names = info.name.split(",") if info.compared else [info.name]
        rows = con.execute("SELECT sweep, spec FROM sweeps WHERE list_contains(?, sweep) ORDER BY sweep", [names]).fetchall()
    return {"specs": [{"sweep": s, "spec": (t or "")[:SPEC_CHARS]} for s, t in rows]}


def trial(store: Store, trial_id: str) -> dict:
    """One trial: its latest attempt's row (config, status, error), its sweeps, its curve's size.

    Raises:
        StoreError: no trial with that id has a result or a curve row.
    """
    row = store.query("SELECT * FROM trials WHERE trial_id = ?", [trial_id]).to_pylist() if store.files("trials") else []
    curve = store.query("SELECT count(*) AS n, max(step) AS last_step FROM metrics WHERE trial_id = ?",
                        [trial_id]).to_pylist()[0]
    if not row and not curve["n"]:
        raise StoreError(f"unknown trial {trial_id!r}: no result and no curve row in the store")
    sweeps_ = store.query("SELECT DISTINCT sweep FROM sweep_trials WHERE trial_id = ? ORDER BY 1",
                          [trial_id]).column("sweep").to_pylist()
    fields = {k: jsonable(v) for k, v in row[0].items() if v is not None} if row else {}
    return {"trial_id": trial_id, "sweeps": sweeps_, "ended": bool(row),
            "status": fields.get("status", "running"), "error": fields.get("error"),
            "fields": fields, "curve_rows": curve["n"], "last_step": curve["last_step"]}


def trial_curve(store: Store, trial_id: str) -> dict:
    """The curve of one trial: every metric it reported at each step (a single trial's rows)."""
    t = store.query("SELECT * FROM metrics WHERE trial_id = ? ORDER BY step", [trial_id])
    names = [c for c in t.column_names if c not in ("trial_id", "attempt", "wall_s")]
    kept = [c for c in names if c == "step" or t.column(c).null_count < t.num_rows]
    return {"trial_id": trial_id, "columns": kept,
            "rows": [[jsonable(r[c]) for c in kept] for r in t.select(kept).to_pylist()]}


def numbers_json(numbers) -> dict:
    """The numbers a figure draws as JSON: those of an analysis figure (`analysis.plot_numbers`) as
    its fields, the axes' labels as {axis: label}, NaN as None; a dict (`curve_bands`) as it is."""
    if not dataclasses.is_dataclass(numbers):
        return numbers
    out = dataclasses.asdict(numbers)
    if "labels" in out:
        out["labels"] = numbers.labels.declared
    return jsonable(out)


def known_sweep(store: Store, sweep: Sweep) -> Sweep:
    """`sweep` if every name in it is a sweep of the store (StoreError naming the known ones)."""
    with open_sweep(store, sweep):
        pass
    return sweep


__all__ = ["sweeps", "meta", "sweep_status", "cells_table", "curve_bands", "transitions_summary", "failures",
           "specs", "trial", "trial_curve", "numbers_json", "jsonable", "NULL", "COMPARED"]

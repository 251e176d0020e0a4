"""Where each sweep stands, read from the store alone (so it works from another terminal)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from paretolab.analysis.curve_memo import curve_trials_sql
from paretolab.store import Store
from paretolab.store.store import columns

# Throughput is the trials that ended in the last 5 minutes over the time since the window (or, if
# later, the first of those trials) started. Not between finish instants: a pack of trials ends at
# one instant, and the rate between two such instants read 5,714 trials/s. A sweep with no trial
# ended in the window is taken as not running: no rate, no ETA.
RATE_WINDOW_S = 300
# what the status reads of each ended trial, with its type
ENDED_COLUMNS = {"status": "VARCHAR", "success": "BOOLEAN", "finished_at": "TIMESTAMPTZ", "wall_s": "DOUBLE"}

STATUS_SQL = f"""
WITH ended AS (
    SELECT st.sweep, t.trial_id, {{ended_columns}}
    FROM sweep_trials st JOIN trials t USING (trial_id)
), started AS (
    SELECT DISTINCT st.sweep, m.trial_id FROM sweep_trials st JOIN {{curve_trials}} m USING (trial_id)
    WHERE m.trial_id NOT IN (SELECT trial_id FROM trials)
)
SELECT s.sweep,
       count(*) AS total,
       count(e.trial_id) AS ended,
       count(*) FILTER (e.success) AS succeeded,
       count(*) FILTER (e.status = 'failed') AS failed,
       count(*) FILTER (e.status = 'diverged') AS diverged,
       count(*) FILTER (e.status = 'pruned') AS pruned,
       (SELECT count(*) FROM started WHERE started.sweep = s.sweep) AS started,
       count(*) FILTER (e.finished_at > $now - INTERVAL {RATE_WINDOW_S} SECOND) AS recent,
       min(e.finished_at - to_microseconds(CAST(coalesce(e.wall_s, 0) * 1e6 AS BIGINT))) FILTER (
           e.finished_at > $now - INTERVAL {RATE_WINDOW_S} SECOND) AS recent_from,
       max(e.finished_at) AS last_finished_at
FROM sweep_trials s LEFT JOIN ended e ON e.sweep = s.sweep AND e.trial_id = s.trial_id
WHERE $sweep IS NULL OR s.sweep = $sweep
GROUP BY s.sweep ORDER BY s.sweep
"""


@dataclass(frozen=True)
class SweepStatus:
    """Counts of one sweep. `started` trials have curves but no result yet (running or interrupted)."""

    sweep: str
    total: int
    ended: int
    succeeded: int
    failed: int
    diverged: int
    pruned: int
    started: int
    rate_per_s: float | None

    @property
    def remaining(self) -> int:
        return self.total - self.ended

    @property
    def eta_s(self) -> float | None:
        return self.remaining / self.rate_per_s if self.rate_per_s else None


def status(store: Store, sweep: str | None = None, now: datetime | None = None) -> list[SweepStatus]:
    """The status of every sweep in `store`, or of `sweep` only.

    Args:
        now: the time the rate is measured at (default: the current time).
    Raises:
        StoreError: no store, or `sweep` is not in it.
    """
    if sweep is not None:
        store.connect(sweep).close()  # raises StoreError naming the known sweeps
    now = now or datetime.now(timezone.utc)
    # a store written by hand (or by a tool of its own) may lack some of them: NULL then (no rate
    # without a wall time)

    def run(con) -> list[dict]:
        have = set(columns(con, "trials"))
        sql = STATUS_SQL.replace("{ended_columns}", ", ".join(
            f"t.{c}" if c in have else f"NULL::{kind} AS {c}" for c, kind in ENDED_COLUMNS.items())
        ).replace("{curve_trials}", curve_trials_sql(con))
        return con.sql(sql, params={"now": now, "sweep": sweep}).to_arrow_table().to_pylist()

    rows = store.read(run)
    if sweep is not None and not rows:  # a sweep submitted with no trial (an empty grid) is in `sweeps` only
        return [SweepStatus(sweep, 0, 0, 0, 0, 0, 0, 0, None)]
    return [
        SweepStatus(r["sweep"], r["total"], r["ended"], r["succeeded"], r["failed"], r["diverged"],
                    r["pruned"], r["started"], _rate(r["recent"], r["recent_from"], now))
        for r in rows
    ]


def status_table(store: Store, sweep: str | None = None, now: datetime | None = None):
    """`status` as a pyarrow Table (one row per sweep: sweep, total, ended, succeeded, failed,
    diverged, pruned, started, remaining, rate_per_s, eta_s), for frames like every other analysis.

    Raises:
        StoreError: no store, or `sweep` is not in it.
    """
    import dataclasses

    import pyarrow as pa

    rows = [dataclasses.asdict(s) | {"remaining": s.remaining, "eta_s": s.eta_s} for s in status(store, sweep, now)]
    schema = pa.schema([("sweep", pa.string()), *((c, pa.int64()) for c in (
        "total", "ended", "succeeded", "failed", "diverged", "pruned", "started", "remaining")),
        ("rate_per_s", pa.float64()), ("eta_s", pa.float64())])
    return pa.Table.from_pylist(rows, schema=schema)


def _rate(recent: int, recent_from: datetime | None, now: datetime) -> float | None:
    """Trials per second: the `recent` trials that ended in the window, over the time since the
    window or the first of them (`recent_from`: its end less its wall time) started; None without one."""
    if not recent or recent_from is None:
        return None
    span_s = (now - max(now - timedelta(seconds=RATE_WINDOW_S), recent_from)).total_seconds()
    return recent / span_s if span_s > 0 else None

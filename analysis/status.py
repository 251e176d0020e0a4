"""Where each sweep stands, read from the store alone (so it works from another terminal)."""

from __future__ import annotations

from dataclasses import dataclass

from paretolab.analysis.store import Store

RATE_WINDOW_S = 60  # throughput is measured over the trials that ended in the last minute

STATUS_SQL = f"""
WITH ended AS (
    SELECT st.sweep, t.trial_id, t.status, t.success, t.finished_at
    FROM sweep_trials st JOIN trials t USING (trial_id)
), started AS (
    SELECT DISTINCT st.sweep, m.trial_id FROM sweep_trials st JOIN metrics_all m USING (trial_id)
    WHERE m.trial_id NOT IN (SELECT trial_id FROM trials)
), last AS (SELECT max(finished_at) AS t FROM trials)
SELECT s.sweep,
       count(*) AS total,
       count(e.trial_id) AS ended,
       count(*) FILTER (e.success) AS succeeded,
       count(*) FILTER (e.status = 'failed') AS failed,
       count(*) FILTER (e.status = 'diverged') AS diverged,
       count(*) FILTER (e.status = 'pruned') AS pruned,
       (SELECT count(*) FROM started WHERE started.sweep = s.sweep) AS started,
       count(*) FILTER (e.finished_at > (SELECT t FROM last) - INTERVAL {RATE_WINDOW_S} SECOND) AS recent,
       epoch(max(e.finished_at) - min(e.finished_at) FILTER (
           e.finished_at > (SELECT t FROM last) - INTERVAL {RATE_WINDOW_S} SECOND)) AS recent_span_s,
       max(e.finished_at) AS last_finished_at
FROM sweep_trials s LEFT JOIN ended e ON e.sweep = s.sweep AND e.trial_id = s.trial_id
WHERE ? IS NULL OR s.sweep = ?
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


def status(store: Store, sweep: str | None = None) -> list[SweepStatus]:
    """The status of every sweep in `store`, or of `sweep` only.

    Raises:
        StoreError: no store, or `sweep` is not in it.
    """
    if sweep is not None:
        store.connect(sweep).close()  # raises StoreError naming the known sweeps
    rows = store.query(STATUS_SQL, [sweep, sweep]).to_pylist()
    if sweep is not None and not rows:  # a sweep submitted with no trial (an empty grid) is in `sweeps` only
        return [SweepStatus(sweep, 0, 0, 0, 0, 0, 0, 0, None)]
    return [
        SweepStatus(r["sweep"], r["total"], r["ended"], r["succeeded"], r["failed"], r["diverged"],
                    r["pruned"], r["started"], _rate(r["recent"], r["recent_span_s"]))
        for r in rows
    ]


def _rate(recent: int, span_s: float | None) -> float | None:
    """Trials per second among those that ended in the last window (None with fewer than two)."""
    if recent < 2 or not span_s:
        return None
    return (recent - 1) / span_s

"""Luck: what running k seeds of a cell in parallel buys, the best-of-k axis of Edelman et al. 2023
("Pareto Frontiers in Neural Feature Learning: Data, Compute, Width, and Luck").

A cell is one grid point over its seeds (`analysis.cells`): n non-failed seeds of which s succeeded,
a success being a trial whose curve met the criterion (diverged trials count as failures). For
each k in 1, 2, 4, ... up to n, and n itself when it is not a power of two (so the last row of a
cell always uses all its seeds), the statistics are exact over the C(n, k) ways to pick k of the
cell's n observed seeds without replacement:

- `p_any_success` = 1 - C(n-s, k) / C(n, k): at least one of the k seeds succeeds.
- `expected_cost` = E[min cost over the k seeds | at least one succeeds], a mean over the k-subsets
  that hold a success (at k = 1 the mean cost of the seeds that succeeded, where `cells` reports
  their median, `median_<cost>`). With the successful costs sorted c_1 <= ... <= c_s and the
  failures ranked after them, the k-subset's best is c_i when it holds seed i and none of seeds
  1..i-1: C(n-i, k-1) of the C(n, k) subsets. So
  expected_cost = sum_i c_i C(n-i, k-1) / C(n, k) / p_any_success (ties in cost need no rule).
  NULL when s = 0, or when a successful seed lacks the chosen cost (no n_params, so no FLOPs).
- `expected_total_cost` = k * expected_cost, a mean too: the compute of k seeds run in lockstep that
  all stop when the first one succeeds, given one does. A round in which none of the k succeeds is
  not included (its cost is the trials' budget, not a cost to success).

`seeds_for_target` instead treats p_success = s/n as a Bernoulli estimate and fresh seeds as
independent draws: the smallest k with 1 - (1 - p)^k >= target; NULL when p = 0, 1 when p = 1.
It repeats on every row of its cell.

Binomial ratios are computed as exp of lgamma differences in DuckDB (relative error about 1e-13
for n in the thousands).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from paretolab.analysis.cells import check_axes, costs_sql, ident, open_sweep
from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import COST_COLUMNS
from paretolab.vocabulary.success import Success

STATS = ("n_seeds", "successes", "p_success", "k_seeds", "p_any_success", "expected_cost",
         "expected_total_cost", "seeds_for_target")


def luck(store: Store, sweep: str, cost: str = "steps_to_success", target: float = 0.9,
         success: str | None = None, axes: list[str] | None = None) -> pa.Table:
    """Best-of-k statistics of every cell of `sweep` (definitions in the module docstring).

    Args:
        cost: steps_to_success, samples_to_success or flops_to_success.
        target: the probability of at least one success that `seeds_for_target` aims at, in (0, 1).
        success: a criterion like `test_error<=0.05` recomputed from the curves; default the sweep's.
        axes: the cell axes; default the sweep's own.
    Returns:
        One row per cell and k: the axes, n_seeds, successes, p_success, k_seeds, p_any_success,
        expected_cost and expected_total_cost (means: module docstring), seeds_for_target; ordered
        by the axes (NULLs last), then k.
        (`n_seeds`/`k_seeds`, not `n`/`k`: sparse parity has parameters named n and k.)
    Raises:
        StoreError: unknown sweep. UsageError: bad cost, target, axis, metric or criterion.
    """
    if cost not in COST_COLUMNS:
        raise UsageError(f"unknown cost {cost!r}; allowed: {', '.join(COST_COLUMNS)}")
    if not 0 < target < 1:
        raise UsageError(f"target must be a probability in (0, 1), got {target}")
    with open_sweep(store, sweep, success) as (con, info, criterion):
        axes = tuple(axes) if axes is not None else info.axes
        for a in axes:
            if a in COST_COLUMNS:
                raise UsageError(f"axis {a!r} is a cost; axes of the sweep: {', '.join(info.axes) or 'none'}")
            check_axes(con, info, [a])
            if a in STATS:
                raise UsageError(f"axis {a!r} has the name of a luck column ({', '.join(STATS)})")
        return con.sql(luck_sql(con, axes, criterion, cost), params={"target": target}).to_arrow_table()


def _lchoose(a: str, b: str) -> str:
    """SQL of ln C(a, b) for 0 <= b <= a."""
    return f"(lgamma(({a}) + 1) - lgamma(({b}) + 1) - lgamma(({a}) - ({b}) + 1))"


def _ratio(a: str, b: str, n: str, k: str) -> str:
    """SQL of C(a, b) / C(n, k), 0 when b > a."""
    return f"CASE WHEN ({b}) <= ({a}) THEN exp({_lchoose(a, b)} - {_lchoose(n, k)}) ELSE 0 END"


def luck_sql(con: duckdb.DuckDBPyConnection, axes: tuple[str, ...], criterion: Success, cost: str) -> str:
    """SQL (named parameter `$target`) of `luck`; `axes` and `cost` must be checked columns."""
    keys = ", ".join(ident(a) for a in axes)
    lead = keys + ", " if keys else ""
    p_any = f"CASE WHEN s = 0 THEN 0 ELSE 1 - ({_ratio('n - s', 'k', 'n', 'k')}) END"
    # ceil(log(1 - target) / log(1 - p)), then moved by one where rounding put it off the definition.
    k0 = "greatest(1, ceil(ln(1 - $target) / ln(1 - s / n)))::BIGINT"
    holds = "1 - pow(1 - s / n, {}) >= $target"
    seeds = (f"CASE WHEN s = 0 THEN NULL WHEN s = n THEN 1 "
             f"WHEN {k0} > 1 AND {holds.format(k0 + ' - 1')} THEN {k0} - 1 "
             f"WHEN NOT ({holds.format(k0)}) THEN {k0} + 1 ELSE {k0} END")
    # Each cell's n, s and k values (g, gk), and its successful seeds ranked by cost (r): only those
    # enter the sum, and only while C(n - i, k - 1) > 0, i.e. i <= n - k + 1. Of a term's ratio
    # C(n - i, k - 1) / C(n, k), what depends on k alone is computed once per cell and k (`_lk`).
    # (Each seed joined with every k took 0.45 s for 10 cells of 10^4 seeds; this, 0.08 s.)
    same = " AND ".join(f"r.{ident(a)} IS NOT DISTINCT FROM gk.{ident(a)}" for a in axes) or "true"
    gkeys = "".join(f"gk.{ident(a)} AS _a{i}, " for i, a in enumerate(axes))
    matched = " AND ".join([f"w._a{i} IS NOT DISTINCT FROM gk.{ident(a)}" for i, a in enumerate(axes)] + ["w._k = gk.k"])
    return f"""
        WITH c AS ({costs_sql(con, criterion)}),
        t AS (SELECT {lead} steps_to_success IS NOT NULL AS ok, {ident(cost)}::DOUBLE AS cost FROM c),
        g AS (SELECT {lead} count(*) AS n, count(*) FILTER (WHERE ok) AS s,
                     count(*) FILTER (WHERE ok AND cost IS NULL) AS unpriced FROM t {'GROUP BY ' + keys if keys else ''}),
        gk AS (SELECT *, lgamma(k) + {_lchoose('n', 'k')} AS _lk FROM (
               SELECT g.*, p.k FROM g JOIN (SELECT 1::BIGINT << j AS k FROM range(0, 62) t(j)) p ON p.k <= g.n
               UNION ALL SELECT g.*, g.n AS k FROM g WHERE g.n & (g.n - 1) <> 0)),
        r AS (SELECT {lead} cost, row_number() OVER ({'PARTITION BY ' + keys if keys else ''} ORDER BY cost ASC NULLS LAST) AS i
              FROM t WHERE ok),
        w AS (SELECT {gkeys}gk.k AS _k, sum(r.cost * exp(lgamma(gk.n - r.i + 1) - lgamma(gk.n - r.i - gk.k + 2) - gk._lk)) AS cost_sum
              FROM r JOIN gk ON {same} AND r.i <= gk.n - gk.k + 1 GROUP BY ALL),
        e AS (SELECT gk.* EXCLUDE (_lk), {p_any} AS p_any_success,
                     CASE WHEN s > 0 AND unpriced = 0 THEN w.cost_sum / ({p_any}) END AS expected_cost
              FROM gk LEFT JOIN w ON {matched})
        SELECT {lead} n AS n_seeds, s AS successes, s / n AS p_success, k AS k_seeds, p_any_success,
               expected_cost, k * expected_cost AS expected_total_cost, ({seeds})::BIGINT AS seeds_for_target
        FROM e ORDER BY {', '.join(ident(a) + ' ASC NULLS LAST' for a in axes) + ', ' if keys else ''}k"""

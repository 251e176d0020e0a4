"""Time to success with censoring: a log-normal accelerated-failure-time fit, and Kaplan-Meier curves.

A trial that succeeded has a time to success t (steps, samples or FLOPs); one that never did within
its budget has only a lower bound c, what it ran: its time is right-censored, not missing. Leaving
such trials out keeps the lucky fast ones where the slow ones were cut, and biases an exponent fitted
by least squares on the rest downward (the `power` form says so). This module fits, by maximum
likelihood over both kinds,

    log t = log(t0) + exponent * log x + sigma * eps,   eps ~ Normal(0, 1)

(log-normal AFT; with log t as the response, the Tobit model with right censoring): a trial that
succeeded adds log pdf, one censored at c adds log P(t > c). `exponent` is the power law of the
median time against x, comparable with the `power` form's. The likelihood is computed from per-x
sums (count, sum of log t, sum of squares; censored counts per distinct c), so a fit over 10^5
trials, and each of its bootstrap resamples, costs a pass over the data and an optimisation over a
few dozen groups. Intervals: the percentile bootstrap over trials (`intervals`).

Kaplan-Meier (`kaplan_meier`): the product-limit estimate of P(not yet succeeded at t), with
Greenwood's 95% band, per group: the natural plot of time to success with censoring. It is a few
lines of numpy, so no survival-analysis library is needed for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from paretolab.analysis.intervals import parameter_table, resampled
from paretolab.vocabulary.errors import UsageError

NAMES = ("exponent", "t0", "sigma")
MEANINGS = ("median time grows as x**exponent", "median time at x = 1", "spread of log time around its median")
Z95 = 1.959963984540054


@dataclass(frozen=True)
class CensoredFit:
    """A log-normal AFT fit. `draws`: resampled (exponent, t0, sigma) rows; `ols`: the least-squares
    exponent of log t on log x over the uncensored trials alone, for comparison."""

    exponent: float
    t0: float
    sigma: float
    x: np.ndarray
    t: np.ndarray
    event: np.ndarray
    log_likelihood: float
    draws: np.ndarray
    ols: float | None
    warnings: tuple[str, ...] = field(default=())

    def parameters(self) -> pa.Table:
        return parameter_table(NAMES, (self.exponent, self.t0, self.sigma), self.draws, MEANINGS)

    def median(self, x) -> np.ndarray:
        """The fitted median time to success at `x`."""
        return self.t0 * np.asarray(x, dtype=float) ** self.exponent

    def points(self) -> pa.Table:
        """The trials fitted: x, t (time to success, or what a censored trial ran), censored, the
        fitted median at x, and the residual log t - log median (a lower bound where censored)."""
        med = self.median(self.x)
        return pa.table({"x": self.x, "t": self.t, "censored": ~self.event, "fitted_median": med,
                         "residual": np.log(self.t) - np.log(med)})

    def goodness(self) -> dict:
        return {"n_points": int(len(self.x)), "n_censored": int((~self.event).sum()),
                "log_likelihood": self.log_likelihood,
                "ols_exponent_uncensored": self.ols}


def fit_censored(x, t, event, n_boot: int = 1000, seed: int = 0) -> CensoredFit:
    """Fit log t = log t0 + exponent log x + sigma eps by maximum likelihood with right censoring.

    Args:
        x: the axis (positive), one per trial.
        t: the time to success of a trial that succeeded; what a censored trial ran (its budget).
        event: True where the trial succeeded (t observed), False where it was censored at t.
        n_boot: bootstrap resamples over trials (0: none). seed: their Generator's seed.
    Raises:
        UsageError: lengths differ, x or t not positive and finite, fewer than 2 distinct x among
            the trials, no trial that succeeded, or n_boot < 0.
    """
    x, t = (np.asarray(v, dtype=float).ravel() for v in (x, t))
    event = np.asarray(event, dtype=bool).ravel()
    if not (len(x) == len(t) == len(event)):
        raise UsageError(f"x, t and event must be as long: {len(x)}, {len(t)}, {len(event)}")
    for name, v in (("x", x), ("t", t)):
        if not np.all(np.isfinite(v) & (v > 0)):
            raise UsageError(f"{name} must be positive and finite for a censored fit; found "
                             f"{v[~(np.isfinite(v) & (v > 0))][0]!r}")
    if len(np.unique(x)) < 2:
        raise UsageError(f"a censored fit needs at least 2 distinct x; got {len(np.unique(x))}")
    if not event.any():
        raise UsageError("no trial succeeded: every time is censored, and the fit has nothing to place its median on")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    groups = _Groups(np.log(x), np.log(t), event)
    ones = np.ones(len(x))
    theta, ll = groups.fit(ones, None)
    rng = np.random.default_rng(seed)
    draws = resampled(len(x), n_boot, lambda w: _natural(groups.fit(w, theta)[0]), rng) if n_boot else np.empty((0, 0))
    exponent, t0, sigma = _natural(theta)
    return CensoredFit(exponent, t0, sigma, x, t, event, ll, draws, _ols(np.log(x[event]), np.log(t[event])),
                       _warnings(x, event))


class _Groups:
    """The data as sums per distinct log x (observed) and per distinct (log x, log c) (censored)."""

    def __init__(self, lx: np.ndarray, lt: np.ndarray, event: np.ndarray):
        self.lt, self.event = lt, event
        self.xs, self.obs_group = np.unique(lx[event], return_inverse=True)
        cens = ~event
        pairs = np.column_stack([lx[cens], lt[cens]])
        self.cens_pairs, self.cens_group = (np.unique(pairs, axis=0, return_inverse=True) if len(pairs)
                                            else (np.empty((0, 2)), np.empty(0, dtype=int)))
        self.cens_group = np.asarray(self.cens_group).ravel()
        self.lt_obs = lt[event]

    def sums(self, w: np.ndarray) -> tuple:
        wo, wc = w[self.event], w[~self.event]
        k = len(self.xs)
        n = np.bincount(self.obs_group, weights=wo, minlength=k)
        s1 = np.bincount(self.obs_group, weights=wo * self.lt_obs, minlength=k)
        s2 = np.bincount(self.obs_group, weights=wo * self.lt_obs ** 2, minlength=k)
        m = np.bincount(self.cens_group, weights=wc, minlength=len(self.cens_pairs))
        return n, s1, s2, m

    def fit(self, w: np.ndarray, start: np.ndarray | None) -> tuple[np.ndarray, float]:
        """(log t0, exponent, log sigma) maximising the weighted likelihood, and its value."""
        from scipy.optimize import minimize

        n, s1, s2, m = self.sums(w)
        if start is None:
            start = self._start(n, s1, s2)
        result = minimize(_negative_ll, start, args=(self.xs, n, s1, s2, self.cens_pairs, m), jac=True, method="BFGS")
        return result.x, -float(result.fun)

    def _start(self, n, s1, s2) -> np.ndarray:
        """Least squares over the per-x means of the observed trials."""
        keep = n > 0
        means = s1[keep] / n[keep]
        xs = self.xs[keep]
        slope = float(np.polyfit(xs, means, 1)[0]) if len(xs) >= 2 else 0.0
        var = float(((s2 - s1 ** 2 / np.where(n > 0, n, 1))[keep]).sum() / max(n.sum(), 1))
        return np.array([float(means.mean() - slope * xs.mean()), slope, 0.5 * np.log(max(var, 1e-4))])


def _negative_ll(theta, xs, n, s1, s2, cens_pairs, m) -> tuple[float, np.ndarray]:
    """Minus the log-likelihood (up to the constant sum of -log t - log sqrt(2 pi)) and its gradient in
    (log t0, exponent, log sigma)."""
    from scipy.special import log_ndtr

    c, b, log_s = theta
    s = np.exp(log_s)
    mu = c + b * xs
    ss = s2 - 2 * mu * s1 + n * mu * mu  # sum of (log t - mu)^2 per group
    ll = -n.sum() * log_s - ss.sum() / (2 * s * s)
    resid = s1 - n * mu  # sum of (log t - mu) per group
    d_mu = resid / (s * s)
    g_c, g_b = d_mu.sum(), (d_mu * xs).sum()
    g_ls = -n.sum() + ss.sum() / (s * s)
    if len(m):
        mu_c = c + b * cens_pairs[:, 0]
        z = (cens_pairs[:, 1] - mu_c) / s
        log_sf = log_ndtr(-z)
        ll += (m * log_sf).sum()
        hazard = np.exp(-0.5 * z * z - 0.5 * np.log(2 * np.pi) - log_sf)  # pdf(z) / sf(z)
        d = m * hazard / s  # d log_sf / d mu = hazard / s
        g_c += d.sum()
        g_b += (d * cens_pairs[:, 0]).sum()
        g_ls += (m * hazard * z).sum()
    return -float(ll), -np.array([g_c, g_b, g_ls])


def _natural(theta: np.ndarray) -> np.ndarray:
    """(exponent, t0, sigma) from (log t0, exponent, log sigma)."""
    c, b, log_s = theta
    return np.array([b, np.exp(c), np.exp(log_s)])


def _ols(lx: np.ndarray, lt: np.ndarray) -> float | None:
    if len(np.unique(lx)) < 2:
        return None
    dx = lx - lx.mean()
    return float((dx * (lt - lt.mean())).sum() / (dx * dx).sum())


def _warnings(x: np.ndarray, event: np.ndarray) -> tuple[str, ...]:
    out = []
    for value in np.unique(x):
        at = x == value
        if not event[at].any():
            out.append(f"no trial at x = {value:g} succeeded: only the censoring places that x; the fit leans on "
                       "the log-normal shape there")
    if len(x) < 20:
        out.append(f"only {len(x)} trials: the intervals are wide")
    return tuple(out)


def kaplan_meier(t, event) -> pa.Table:
    """The product-limit estimate of S(t) = P(not succeeded by t): one row per distinct time with a
    success: time, at_risk, successes, survival, and Greenwood's 95% band (lo, hi, clipped to [0, 1]).
    A censored trial is at risk up to and including its time (a trial that ran c steps without
    success had not succeeded at c)."""
    t = np.asarray(t, dtype=float).ravel()
    event = np.asarray(event, dtype=bool).ravel()
    times = np.unique(t[event])
    rows, s, greenwood = [], 1.0, 0.0
    for time in times:
        at_risk = int((t >= time).sum())
        d = int(((t == time) & event).sum())
        s *= 1 - d / at_risk
        if at_risk > d:
            greenwood += d / (at_risk * (at_risk - d))
        half = Z95 * s * np.sqrt(greenwood)
        rows.append({"time": float(time), "at_risk": at_risk, "successes": d, "survival": s,
                     "lo": max(0.0, s - half), "hi": min(1.0, s + half)})
    return pa.Table.from_pylist(rows, schema=pa.schema([
        ("time", pa.float64()), ("at_risk", pa.int64()), ("successes", pa.int64()), ("survival", pa.float64()),
        ("lo", pa.float64()), ("hi", pa.float64())]))

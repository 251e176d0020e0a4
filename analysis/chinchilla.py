"""Parametric loss fits of the Chinchilla form, and the compute-optimal allocation they imply.

    L(N, D) = E + A / N**alpha + B / D**beta

N: the model's parameters, D: the training tokens (or examples), L: the loss. The fit is the one of
Hoffmann et al. 2022 ("approach 3"), as Besiroglu et al. 2024 ("Chinchilla Scaling: A replication
attempt") redid it: with a = log A, b = log B, e = log E, minimise over the points

    sum Huber_delta( logsumexp(a - alpha log N, b - beta log D, e) - log L ),   delta = 1e-3

from every start of a grid (a, b in {0, 5, ..., 25}, e in {-1, -0.5, ..., 1}, alpha, beta in
{0, 0.5, ..., 2}: 4,500 starts), keeping the best. Each start runs BFGS (scipy) with the objective's
analytic gradient: the parameters are unbounded in this form, and scipy 1.17's L-BFGS-B took 25
times longer per start on 250 points, to the same optimum (`benchmarks/fits.py --optimizers`: 133 ms
against 5.4 ms). Intervals: the percentile bootstrap
(`intervals`), each resample's fit started from the data's best fit.

Compute-optimal allocation (minimise L subject to C = 6 N D; Hoffmann et al., appendix D.2):

    N*(C) = G (C/6)**a_exp,  D*(C) = G**-1 (C/6)**b_exp,
    G = (alpha A / (beta B))**(1 / (alpha + beta)),  a_exp = beta / (alpha + beta),  b_exp = alpha / (alpha + beta)

with intervals from the same resamples. This is the optimum of the fitted surface. The other common
estimate, a parabola fitted to each isoFLOP curve ("approach 2"), is biased when the grid of model
sizes is not symmetric about the optimum in log N, so it is not what this module reports; the
isoFLOP view (`isoflop`) is the fitted loss along a budget, for looking at the data against it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from paretolab.analysis.intervals import interval, parameter_table, resampled
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import FLOPS_PER_PARAM_PER_TOKEN  # C = 6 N D

HUBER_DELTA = 1e-3
GRID = {"a": np.arange(0.0, 30.0, 5.0), "b": np.arange(0.0, 30.0, 5.0), "e": np.arange(-1.0, 1.5, 0.5),
        "alpha": np.arange(0.0, 2.5, 0.5), "beta": np.arange(0.0, 2.5, 0.5)}
MIN_POINTS = 10  # five parameters: fewer points leave them barely determined
NAMES = ("E", "A", "B", "alpha", "beta")
MEANINGS = ("irreducible loss", "scale of the model-size term", "scale of the data term",
            "exponent of model size N", "exponent of data D")


@dataclass(frozen=True)
class ChinchillaFit:
    """A fit of L(N, D) = E + A / N**alpha + B / D**beta. `draws`: the resampled estimates, one row
    of (E, A, B, alpha, beta) each; `huber`: the objective at the fit; `warnings`: what makes the fit
    or an extrapolation from it doubtful."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    huber: float
    starts: int
    draws: np.ndarray
    warnings: tuple[str, ...] = field(default=())

    def predict(self, n, d) -> np.ndarray:
        """The fitted loss at model size `n` and data `d` (numbers or arrays)."""
        return loss_at(np.array([self.E, self.A, self.B, self.alpha, self.beta]), n, d)

    def parameters(self) -> pa.Table:
        """E, A, B, alpha, beta and the optimal allocation's a_exp, b_exp and G, each with its 95%
        bootstrap interval (`intervals.parameter_table`)."""
        est = np.array([[self.E, self.A, self.B, self.alpha, self.beta]])
        names = (*NAMES, "a_exp", "b_exp", "G")
        meanings = (*MEANINGS, "N*(C) grows as C**a_exp", "D*(C) grows as C**b_exp", "N*(C) = G (C/6)**a_exp")
        both = np.vstack([est, self.draws]) if self.draws.size else est
        g, a_exp, b_exp = _allocation(both)
        derived = np.column_stack([both, a_exp, b_exp, g])
        return parameter_table(names, derived[0], derived[1:], meanings)

    def points(self) -> pa.Table:
        """The points fitted: n, d, loss, fitted, and the residual log(loss) - log(fitted)."""
        fitted = self.predict(self.n, self.d)
        return pa.table({"n": self.n, "d": self.d, "loss": self.loss, "fitted": fitted,
                         "residual": np.log(self.loss) - np.log(fitted)})

    def goodness(self) -> dict:
        """n_points, the Huber objective, the RMSE of log loss and R^2 of log loss."""
        r = np.log(self.loss) - np.log(self.predict(self.n, self.d))
        t = np.log(self.loss)
        sst = float(((t - t.mean()) ** 2).sum())
        return {"n_points": int(len(self.n)), "huber": self.huber, "rmse_log": float(np.sqrt((r * r).mean())),
                "r2_log": 1 - float((r * r).sum()) / sst if sst > 0 else None}

    def optimal(self, budgets) -> pa.Table:
        """The compute-optimal N*, D* and loss at each budget C (FLOPs, C = 6 N D), with 95% bootstrap
        intervals, and whether each lies outside the N or D of the data (`extrapolated`).

        Raises:
            UsageError: a budget that is not a positive number, or a fit with alpha or beta <= 0
                (no optimum: the loss does not fall with N or with D).
        """
        budgets = np.asarray(budgets, dtype=float).ravel()
        if not budgets.size or not np.all(np.isfinite(budgets)) or np.any(budgets <= 0):
            raise UsageError(f"budgets must be positive numbers of FLOPs, got {budgets.tolist()}")
        if self.alpha <= 0 or self.beta <= 0:
            raise UsageError(f"no compute-optimal allocation: the fit has alpha = {self.alpha:.3g} and beta = "
                             f"{self.beta:.3g}; both must be > 0 (the loss must fall with N and with D)")
        rows = []
        for c in budgets:
            n_opt, d_opt, l_opt = optimum(np.array([self.E, self.A, self.B, self.alpha, self.beta]), c)
            boot = np.array([optimum(p, c) for p in self.draws if p[3] > 0 and p[4] > 0]) \
                if self.draws.size else np.empty((0, 3))
            (n_lo, n_hi), (d_lo, d_hi), (l_lo, l_hi) = (interval(boot, i) for i in range(3))
            outside = not (self.n.min() <= n_opt <= self.n.max() and self.d.min() <= d_opt <= self.d.max())
            rows.append({"flops": float(c), "n_opt": n_opt, "n_lo": n_lo, "n_hi": n_hi, "d_opt": d_opt,
                         "d_lo": d_lo, "d_hi": d_hi, "loss_opt": l_opt, "loss_lo": l_lo, "loss_hi": l_hi,
                         "tokens_per_param": d_opt / n_opt, "extrapolated": outside})
        return pa.Table.from_pylist(rows)

    def isoflop(self, budget: float, n_values) -> pa.Table:
        """The fitted loss along one budget: for each model size n, the data d = C / (6 n) it affords
        and the loss there (approach 2's view of the fitted surface, not a parabola fit)."""
        n_values = np.asarray(n_values, dtype=float)
        d_values = budget / (FLOPS_PER_PARAM_PER_TOKEN * n_values)
        return pa.table({"flops": np.full(len(n_values), float(budget)), "n": n_values, "d": d_values,
                         "loss": self.predict(n_values, d_values)})


def fit_chinchilla(n, d, loss, n_boot: int = 1000, seed: int = 0, delta: float = HUBER_DELTA,
                   grid: dict | None = None, starts: int | None = None) -> ChinchillaFit:
    """Fit L(N, D) = E + A / N**alpha + B / D**beta to the points (see the module docstring).

    Args:
        n, d, loss: positive numbers, one per point (model size, data, loss).
        n_boot: bootstrap resamples for the intervals (0: none).
        seed: seed of the numpy Generator that draws the resamples.
        delta: the Huber loss's delta, on log loss.
        grid: starts, as lists per log-parameter (a, b, e, alpha, beta); default `GRID` (4,500).
        starts: run BFGS only from this many of the grid's starts, those where the objective is
            lowest (every start is evaluated; None: from every start).
    Raises:
        UsageError: arrays of different lengths, values that are not positive and finite, fewer than
            5 points, or n_boot < 0.
    """
    n, d, loss = (np.asarray(v, dtype=float).ravel() for v in (n, d, loss))
    if not (len(n) == len(d) == len(loss)):
        raise UsageError(f"n, d and loss must be as long: {len(n)}, {len(d)}, {len(loss)}")
    for name, v in (("n", n), ("d", d), ("loss", loss)):
        if not np.all(np.isfinite(v) & (v > 0)):
            bad = v[~(np.isfinite(v) & (v > 0))][0]
            raise UsageError(f"{name} must be positive and finite for a Chinchilla fit; found {bad!r}")
    if len(n) < 5:
        raise UsageError(f"a Chinchilla fit has 5 parameters and needs at least 5 points; got {len(n)}")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    if starts is not None and starts < 1:
        raise UsageError(f"starts must be >= 1, got {starts}")
    x, y, t = np.log(n), np.log(d), np.log(loss)
    points = np.array(list(itertools.product(*(np.asarray(v, dtype=float) for v in (grid or GRID).values()))))
    ones = np.ones(len(t))
    if starts is not None and starts < len(points):
        values = np.array([_objective(p, x, y, t, ones, delta)[0] for p in points])
        points = points[np.argsort(values, kind="stable")[:starts]]
    best_theta, best_value = None, np.inf
    for start in points:
        theta, value = _minimise(start, x, y, t, ones, delta)
        if value < best_value:
            best_theta, best_value = theta, value
    rng = np.random.default_rng(seed)

    def refit(counts: np.ndarray) -> np.ndarray:
        theta, _ = _minimise(best_theta, x, y, t, counts, delta)
        return _natural(theta)

    draws = resampled(len(t), n_boot, refit, rng) if n_boot else np.empty((0, 0))
    E, A, B, alpha, beta = _natural(best_theta)
    return ChinchillaFit(E, A, B, alpha, beta, n, d, loss, float(best_value), len(points), draws,
                         _warnings(len(t), E, alpha, beta, n, d))


def loss_at(params: np.ndarray, n, d) -> np.ndarray:
    """E + A / n**alpha + B / d**beta for params (E, A, B, alpha, beta)."""
    E, A, B, alpha, beta = params
    return E + A / np.asarray(n, dtype=float) ** alpha + B / np.asarray(d, dtype=float) ** beta


def optimum(params: np.ndarray, flops: float) -> tuple[float, float, float]:
    """(N*, D*, L(N*, D*)) at the budget `flops` for params (E, A, B, alpha, beta), alpha, beta > 0."""
    E, A, B, alpha, beta = params
    g, a_exp, _ = (v[0] for v in _allocation(np.array([params])))
    n_opt = g * (flops / FLOPS_PER_PARAM_PER_TOKEN) ** a_exp
    d_opt = flops / (FLOPS_PER_PARAM_PER_TOKEN * n_opt)
    return float(n_opt), float(d_opt), float(loss_at(params, n_opt, d_opt))


def _allocation(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(G, a_exp, b_exp) per row of (E, A, B, alpha, beta); NaN where alpha or beta <= 0."""
    _, A, B, alpha, beta = params.T
    ok = (alpha > 0) & (beta > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = alpha + beta
        g = np.where(ok, (alpha * A / np.where(ok, beta * B, 1.0)) ** (1 / np.where(ok, s, 1.0)), np.nan)
        return g, np.where(ok, beta / s, np.nan), np.where(ok, alpha / s, np.nan)


def _minimise(start: np.ndarray, x, y, t, w, delta: float) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    result = minimize(_objective, start, args=(x, y, t, w, delta), jac=True, method="BFGS")
    return result.x, float(result.fun)


def _objective(theta: np.ndarray, x, y, t, w, delta: float) -> tuple[float, np.ndarray]:
    """The weighted Huber objective on log loss and its gradient in (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    u1, u2 = a - alpha * x, b - beta * y
    m = np.maximum(np.maximum(u1, u2), e)
    e1, e2, e3 = np.exp(u1 - m), np.exp(u2 - m), np.exp(e - m)
    s = e1 + e2 + e3
    r = m + np.log(s) - t
    ar = np.abs(r)
    value = float(w @ np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)))
    g = w * np.clip(r, -delta, delta) / s
    g1, g2 = g * e1, g * e2
    return value, np.array([g1.sum(), g2.sum(), (g * e3).sum(), -(g1 @ x), -(g2 @ y)])


def _natural(theta: np.ndarray) -> np.ndarray:
    """(E, A, B, alpha, beta) from (a, b, e, alpha, beta)."""
    a, b, e, alpha, beta = theta
    return np.array([np.exp(e), np.exp(a), np.exp(b), alpha, beta])


def _warnings(points: int, E: float, alpha: float, beta: float, n: np.ndarray, d: np.ndarray) -> tuple[str, ...]:
    out = []
    if points < MIN_POINTS:
        out.append(f"only {points} points for 5 parameters: the intervals are wide and the fit fragile")
    if alpha <= 0 or beta <= 0:
        out.append(f"alpha = {alpha:.3g}, beta = {beta:.3g}: the loss does not fall with "
                   f"{'N' if alpha <= 0 else 'D'} in these data; no compute-optimal allocation")
    if E < 1e-6:
        out.append(f"E = {E:.3g}: the fit found no irreducible loss (E at its bound, 0)")
    if len(np.unique(n)) < 3 or len(np.unique(d)) < 3:
        out.append(f"{len(np.unique(n))} distinct N and {len(np.unique(d))} distinct D: an exponent needs at least 3 of each")
    return tuple(out)

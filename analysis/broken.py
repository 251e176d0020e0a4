"""Smoothly broken power laws (Caballero et al. 2023, "Broken Neural Scaling Laws"):

    y = a + b x**(-c0) * prod_i (1 + (x / d_i)**(1 / f_i))**(-c_i f_i),   i = 1 .. breaks

A single power law bends at each break d_i: its exponent goes from -c0 to -(c0 + c_1) past d_1 (and
so on), over a width set by f_i (small f: a sharp bend). It fits the plateau and sudden drop of a
learning curve, or a cost that scales one way below a size and another above, where one power law
cannot. `a` is the floor y tends to (0 allowed).

The fit: least squares on log y, with the form computed in log space (log-sum-exp, so that no
power overflows), by BFGS (scipy) from a grid of starts (the breaks at quantiles of log x, sharp and
smooth bends, exponents from the least-squares line), the best kept; intervals from the percentile
bootstrap (`intervals`), each resample started from the best fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from paretolab.analysis.intervals import parameter_table, resampled
from paretolab.vocabulary.errors import UsageError

FLOOR_OFF = -50.0  # log a at which the floor is taken as absent (a = 2e-22)


@dataclass(frozen=True)
class BrokenFit:
    """A smoothly broken power law. `params`: a, b, c0, then (c_i, d_i, f_i) per break; `draws`: the
    resampled params, one row each."""

    breaks: int
    params: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sse: float
    draws: np.ndarray
    warnings: tuple[str, ...] = field(default=())

    def names(self) -> tuple[str, ...]:
        return ("a", "b", "c0", *(f"{p}{i}" for i in range(1, self.breaks + 1) for p in ("c", "d", "f")))

    def predict(self, x) -> np.ndarray:
        return np.exp(_log_form(_theta(self.params, self.breaks), np.log(np.asarray(x, dtype=float)), self.breaks))

    def parameters(self) -> pa.Table:
        meanings = ("the floor y tends to", "scale", "exponent before the first break (y ~ x**-c0)",
                    *(m for i in range(1, self.breaks + 1) for m in (
                        f"change of exponent at break {i} (after it: -(c0 + ... + c{i}))", f"where break {i} is (x)",
                        f"sharpness of break {i} (small: sharp)")))
        return parameter_table(self.names(), self.params, self.draws, meanings)

    def points(self) -> pa.Table:
        fitted = self.predict(self.x)
        return pa.table({"x": self.x, "y": self.y, "fitted": fitted, "residual": np.log(self.y) - np.log(fitted)})

    def goodness(self) -> dict:
        t = np.log(self.y)
        sst = float(((t - t.mean()) ** 2).sum())
        return {"n_points": int(len(self.x)), "rmse_log": float(np.sqrt(self.sse / len(self.x))),
                "r2_log": 1 - self.sse / sst if sst > 0 else None}


def fit_broken(x, y, breaks: int = 1, n_boot: int = 1000, seed: int = 0) -> BrokenFit:
    """Fit a smoothly broken power law with `breaks` breaks (1 or 2) to positive (x, y).

    Raises:
        UsageError: breaks not 1 or 2, lengths differ, values not positive and finite, fewer
            distinct x than parameters, or n_boot < 0.
    """
    if breaks not in (1, 2):
        raise UsageError(f"--breaks must be 1 or 2, got {breaks}")
    x, y = (np.asarray(v, dtype=float).ravel() for v in (x, y))
    if len(x) != len(y):
        raise UsageError(f"x and y must be as long: {len(x)}, {len(y)}")
    for name, v in (("x", x), ("y", y)):
        if not np.all(np.isfinite(v) & (v > 0)):
            raise UsageError(f"{name} must be positive and finite for a broken power law; found "
                             f"{v[~(np.isfinite(v) & (v > 0))][0]!r}")
    k = 3 + 3 * breaks
    if len(np.unique(x)) < k:
        raise UsageError(f"a broken power law with {breaks} break(s) has {k} parameters and needs at least {k} "
                         f"distinct x; got {len(np.unique(x))}")
    if n_boot < 0:
        raise UsageError(f"n_boot must be >= 0, got {n_boot}")
    lx, ly = np.log(x), np.log(y)
    ones = np.ones(len(x))
    best, best_sse = None, np.inf
    for start in _starts(lx, ly, breaks):
        theta, sse = _minimise(start, lx, ly, ones, breaks)
        if sse < best_sse:
            best, best_sse = theta, sse
    rng = np.random.default_rng(seed)
    draws = resampled(len(x), n_boot, lambda w: _natural(_minimise(best, lx, ly, w, breaks)[0], breaks), rng) \
        if n_boot else np.empty((0, 0))
    params = _natural(best, breaks)
    return BrokenFit(breaks, params, x, y, float(best_sse), draws, _warnings(params, breaks, x))


def _log_form(theta: np.ndarray, lx: np.ndarray, breaks: int) -> np.ndarray:
    """log y of the form at log x, from theta = (log a, log b, c0, then c_i, log d_i, log f_i per break)."""
    la, lb, c0 = theta[:3]
    power = lb - c0 * lx
    for i in range(breaks):
        c, ld, lf = theta[3 + 3 * i: 6 + 3 * i]
        f = np.exp(np.clip(lf, -10.0, 10.0))  # (an optimiser's step may try any f; the form needs 0 < f < inf)
        power = power - c * f * np.logaddexp(0.0, (lx - ld) / f)
    return np.logaddexp(la, power)


def _sse(theta, lx, ly, w, breaks) -> float:
    with np.errstate(all="ignore"):  # a step into overflow is scored as infinitely bad, not warned about
        r = ly - _log_form(theta, lx, breaks)
        value = float(w @ (r * r))
    return value if np.isfinite(value) else 1e300


def _minimise(start, lx, ly, w, breaks) -> tuple[np.ndarray, float]:
    from scipy.optimize import minimize

    result = minimize(_sse, start, args=(lx, ly, w, breaks), method="BFGS")
    return result.x, float(result.fun)


def _starts(lx: np.ndarray, ly: np.ndarray, breaks: int) -> list[np.ndarray]:
    slope, intercept = np.polyfit(lx, ly, 1)
    spots = np.quantile(lx, np.linspace(0.2, 0.8, 4))
    floors = (FLOOR_OFF, float(ly.min()) - np.log(2.0))
    # with two breaks, fewer starts per break (their pairs multiply)
    changes = (-1.0, 1.0, 3.0) if breaks == 1 else (-1.0, 1.0)
    sharpness = (np.log(0.1), np.log(1.0)) if breaks == 1 else (np.log(0.3),)
    out = []
    for la in floors:
        for combo in itertools.product(*[list(itertools.product(changes, spots, sharpness))] * breaks):
            if breaks == 2 and combo[0][1] >= combo[1][1]:
                continue  # the breaks in order
            out.append(np.array([la, intercept, -slope, *(v for c in combo for v in c)]))
    return out


def _theta(params: np.ndarray, breaks: int) -> np.ndarray:
    """Back from (a, b, c0, c_i, d_i, f_i) to theta."""
    a, b, c0 = params[:3]
    theta = [np.log(a) if a > 0 else FLOOR_OFF, np.log(b), c0]
    for i in range(breaks):
        c, d, f = params[3 + 3 * i: 6 + 3 * i]
        theta += [c, np.log(d), np.log(f)]
    return np.array(theta)


def _natural(theta: np.ndarray, breaks: int) -> np.ndarray:
    la, lb, c0 = theta[:3]
    out = [np.exp(la) if la > FLOOR_OFF + 5 else 0.0, np.exp(lb), c0]
    for i in range(breaks):
        c, ld, lf = theta[3 + 3 * i: 6 + 3 * i]
        out += [c, np.exp(ld), np.exp(lf)]
    return np.array(out)


def _warnings(params: np.ndarray, breaks: int, x: np.ndarray) -> tuple[str, ...]:
    out = []
    for i in range(breaks):
        d = params[4 + 3 * i]
        if not x.min() <= d <= x.max():
            out.append(f"break {i + 1} is at x = {d:.3g}, outside the data ({x.min():.3g} .. {x.max():.3g}): "
                       "the data do not show it")
    if len(x) < 3 * (3 + 3 * breaks):
        out.append(f"only {len(x)} points for {3 + 3 * breaks} parameters: the intervals are wide")
    return tuple(out)

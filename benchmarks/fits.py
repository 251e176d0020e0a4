"""How long the scaling-law fits take at the sizes researchers fit.

    python benchmarks/fits.py                 # everything below
    python benchmarks/fits.py --optimizers    # also: BFGS against L-BFGS-B per start (why BFGS)

1. A Chinchilla-form fit (`analysis.chinchilla.fit_chinchilla`) of 250 points drawn from Hoffmann
   et al.'s published parameters with 1% noise: BFGS from every start of the 4,500-point grid, then
   1,000 bootstrap resamples (each refitted from the best fit). Timed apart: the starts and the
   bootstrap. Checked: the fit recovers the parameters it was drawn from within its intervals.
2. A censored fit (`analysis.censored.fit_censored`) of 10^5 trials (20 values of x, 5,000 trials
   each, log-normal times, about a third censored at a cap) with 1,000 bootstrap resamples.
   Checked: the exponent's interval covers the true one.
3. With `--optimizers`: BFGS and L-BFGS-B (scipy.optimize.minimize, the same objective and analytic
   gradient) from the same 300 starts of the grid on the 250 points: ms per start and the best
   objective each finds.

Targets: each of 1 and 2 under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import busy_warning, machine_line  # noqa: E402

TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_points(rng, points: int = 250):
    n = np.exp(rng.uniform(np.log(1e6), np.log(1e9), points))
    d = np.exp(rng.uniform(np.log(1e8), np.log(1e11), points))
    loss = (TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]) * np.exp(rng.normal(0, 0.01, points))
    return n, d, loss


def chinchilla(n_boot: int) -> None:
    from paretolab.analysis.chinchilla import fit_chinchilla

    n, d, loss = chinchilla_points(np.random.default_rng(0))
    start = time.perf_counter()
    fit_chinchilla(n, d, loss, n_boot=0)
    starts_s = time.perf_counter() - start
    start = time.perf_counter()
    fit = fit_chinchilla(n, d, loss, n_boot=n_boot)
    total_s = time.perf_counter() - start
    rows = {r["parameter"]: r for r in fit.parameters().to_pylist()}
    covered = [name for name in TRUE if rows[name]["lo"] <= TRUE[name] <= rows[name]["hi"]]
    print(f"chinchilla: 250 points, {fit.starts} starts: {starts_s:.1f} s; with {n_boot} bootstrap resamples: "
          f"{total_s:.1f} s in all ({(total_s - starts_s) / max(n_boot, 1) * 1e3:.1f} ms per resample) "
          f"-> {'MET' if total_s < 30 else 'NOT met'} (target < 30 s)")
    print(f"  alpha {fit.alpha:.4f} [{rows['alpha']['lo']:.4f}, {rows['alpha']['hi']:.4f}], beta {fit.beta:.4f} "
          f"[{rows['beta']['lo']:.4f}, {rows['beta']['hi']:.4f}]; true values inside their intervals: {', '.join(covered)}")


def censored(n_boot: int) -> None:
    from paretolab.analysis.censored import fit_censored

    rng = np.random.default_rng(1)
    x = np.repeat(np.geomspace(1, 150, 20), 5000)
    t = 3 * x ** 1.2 * np.exp(rng.standard_normal(len(x)))
    cap = 300.0
    start = time.perf_counter()
    fit = fit_censored(x, np.minimum(t, cap), t <= cap, n_boot=n_boot)
    wall = time.perf_counter() - start
    row = fit.parameters().to_pylist()[0]
    print(f"censored: {len(x):,} trials ({(t > cap).mean():.0%} censored), {n_boot} bootstrap resamples: {wall:.1f} s "
          f"-> {'MET' if wall < 30 else 'NOT met'} (target < 30 s)")
    print(f"  exponent {fit.exponent:.4f} [{row['lo']:.4f}, {row['hi']:.4f}] (true 1.2); least squares on the "
          f"successes alone: {fit.ols:.4f}")


def optimizers() -> None:
    import itertools

    from scipy.optimize import minimize

    from paretolab.analysis.chinchilla import GRID, HUBER_DELTA, _objective

    n, d, loss = chinchilla_points(np.random.default_rng(0))
    args = (np.log(n), np.log(d), np.log(loss), np.ones(len(n)), HUBER_DELTA)
    starts = np.array(list(itertools.product(*GRID.values())))[::15]
    for method in ("BFGS", "L-BFGS-B"):
        start = time.perf_counter()
        best = min(minimize(_objective, s, args=args, jac=True, method=method).fun for s in starts)
        wall = time.perf_counter() - start
        print(f"{method:>9}: {wall / len(starts) * 1e3:.1f} ms per start over {len(starts)} starts; best objective {best:.10g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--optimizers", action="store_true", help="also time BFGS against L-BFGS-B per start")
    args = ap.parse_args()
    print(machine_line())
    if (warning := busy_warning()) is not None:
        print(warning)
    chinchilla(args.n_boot)
    censored(args.n_boot)
    if args.optimizers:
        optimizers()


if __name__ == "__main__":
    main()

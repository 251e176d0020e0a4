"""Figures of the scaling-law forms (`scaling.FitReport`): the fit over its data with a bootstrap band
and its residuals, one column of panels per group; Kaplan-Meier curves for the censored form; the
compute-optimal N*(C) and D*(C). Each attaches the numbers it draws (`figure.attach`)."""

from __future__ import annotations

import numpy as np

from paretolab.analysis import figure
from paretolab.analysis.censored import kaplan_meier
from paretolab.analysis.chinchilla import loss_at, optimum
from paretolab.analysis.intervals import CI_PERCENTILES

BAND = CI_PERCENTILES  # the 95% band: percentiles of the resampled fits' predictions
LINE_POINTS = 200


def plot_report(report):
    """The fit of each group over its data (top) and the residuals (bottom); the censored form adds
    Kaplan-Meier curves of time to success per x."""
    groups = len(report.fits)
    rows = 3 if report.form == "censored" else 2
    fig, axes = figure.panels(rows * groups, columns=groups)
    data = []
    for i, (group, fit) in enumerate(zip(report.groups, report.fits)):
        top, bottom = axes[i], axes[groups + i]
        title = ", ".join(f"{k}={v}" for k, v in group.items())
        draw = {"power": _power, "broken": _curve, "chinchilla": _chinchilla, "censored": _censored}[report.form]
        data += [{**group, **row} for row in draw(top, fit, report.roles)]
        top.set_title(title or f"{report.form} fit")
        _residuals(bottom, fit, report)
        if report.form == "censored":
            data += [{**group, **row} for row in _kaplan_meier(axes[2 * groups + i], fit, report.roles)]
    return figure.attach(fig, data)


def plot_optimal(report, budgets):
    """N*(C) and D*(C) of each group's fit against the budget, with 95% bootstrap bands, over the
    budgets asked for (and the data's own range of 6 N D), the data's runs drawn as points; and the
    isoFLOP view of the first group's fit: the fitted loss against N along each budget, its minimum
    marked (the optimum of the fitted surface, not a parabola fitted to the points: docs/scaling.md)."""
    fig, (left, right, iso) = figure.panels(3, columns=3)
    _isoflops(iso, report.fits[0], budgets)
    colors = figure.colors(len(report.fits))
    data = []
    for (group, fit), color in zip(zip(report.groups, report.fits), colors):
        c = 6 * fit.n * fit.d
        grid = np.geomspace(min(c.min(), min(budgets)), max(c.max(), max(budgets)), LINE_POINTS)
        best = np.array([optimum(np.array([fit.E, fit.A, fit.B, fit.alpha, fit.beta]), b) for b in grid])
        boot = np.array([[optimum(p, b)[:2] for b in grid] for p in fit.draws if p[3] > 0 and p[4] > 0]) \
            if fit.draws.size else np.empty((0, LINE_POINTS, 2))
        label = ", ".join(f"{k}={v}" for k, v in group.items()) or None
        for ax, col, name in ((left, 0, "N*"), (right, 1, "D*")):
            ax.plot(grid, best[:, col], color=color, label=label)
            if len(boot):
                lo, hi = np.percentile(boot[:, :, col], BAND, axis=0)
                ax.fill_between(grid, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.scatter(c, fit.n if col == 0 else fit.d, s=8, color=color, alpha=0.5)
            for b in budgets:
                ax.axvline(b, color="#999999", linewidth=0.6, linestyle=":")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("compute C = 6 N D (FLOPs)")
            ax.set_ylabel(f"{name}: compute-optimal {'model size N' if col == 0 else 'data D'}")
        data += [{**group, "flops": float(g), "n_opt": float(n), "d_opt": float(d)} for g, (n, d, _) in zip(grid, best)]
    left.set_title("compute-optimal model size")
    right.set_title("compute-optimal data")
    if len(report.fits) > 1:
        figure.legend(left, len(report.fits))
    return figure.attach(fig, data)


def _isoflops(ax, fit, budgets) -> None:
    colors = figure.colors(len(budgets))
    for budget, color in zip(sorted(budgets), colors):
        n_opt, _, l_opt = optimum(np.array([fit.E, fit.A, fit.B, fit.alpha, fit.beta]), budget) \
            if fit.alpha > 0 and fit.beta > 0 else (None, None, None)
        centre = n_opt if n_opt else float(np.sqrt(fit.n.min() * fit.n.max()))
        ns = np.geomspace(centre / 100, centre * 100, LINE_POINTS)
        line = fit.isoflop(budget, ns)
        ax.plot(ns, line.column("loss").to_numpy(), color=color, label=f"C = {budget:.3g}")
        if n_opt:
            ax.scatter([n_opt], [l_opt], color=color, s=30, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("model size N (data D = C / 6N)")
    ax.set_ylabel("fitted loss")
    ax.set_title("isoFLOP view of the fit (dots: the optimum)")
    figure.legend(ax, len(budgets))


def _band(ax, x, predictions, color, labelled: bool = True) -> None:
    if len(predictions):
        lo, hi = np.percentile(predictions, BAND, axis=0)
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0,
                        label="95% bootstrap band" if labelled else None)


def _log_axes(ax) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")


def _finish(ax, roles: dict, y: str, entries: int) -> None:
    """Log-log axes labelled with what the roles read (`y` where the y role is unnamed), and the legend."""
    _log_axes(ax)
    ax.set_xlabel(roles.get("x", "x"))
    ax.set_ylabel(roles.get("y", y))
    figure.legend(ax, entries)


def _power(ax, fit, roles) -> list[dict]:
    color = figure.OKABE_ITO[0]
    xs = np.geomspace(fit.x.min(), fit.x.max(), LINE_POINTS)
    ax.scatter(fit.x, fit.y, s=10, color="#555555", alpha=0.6, label="points")
    ax.plot(xs, fit.a * xs ** fit.b, color=color, label=f"y = {fit.a:.3g} x^{fit.b:.3g}")
    if fit.draws.size:
        _band(ax, xs, np.array([a * xs ** b for b, a in fit.draws]), color)
    _finish(ax, roles, "y", 3)
    return [{"x": float(x), "fitted": float(fit.a * x ** fit.b)} for x in xs]


def _curve(ax, fit, roles) -> list[dict]:
    color = figure.OKABE_ITO[0]
    xs = np.geomspace(fit.x.min(), fit.x.max(), LINE_POINTS)
    ax.scatter(fit.x, fit.y, s=10, color="#555555", alpha=0.6, label="points")
    ax.plot(xs, fit.predict(xs), color=color, label=f"broken power law, {fit.breaks} break{'s' if fit.breaks > 1 else ''}")
    if fit.draws.size:
        from dataclasses import replace

        _band(ax, xs, np.array([replace(fit, params=p).predict(xs) for p in fit.draws]), color)
    for i in range(fit.breaks):
        ax.axvline(fit.params[4 + 3 * i], color="#999999", linestyle="--", linewidth=0.8)
    _finish(ax, roles, "y", 3)
    return [{"x": float(x), "fitted": float(v)} for x, v in zip(xs, fit.predict(xs))]


def _chinchilla(ax, fit, roles) -> list[dict]:
    """Loss against N, the points coloured by D; the fitted loss along N at the quartiles of D."""
    import matplotlib

    norm = matplotlib.colors.LogNorm(fit.d.min(), fit.d.max())
    cmap = matplotlib.colormaps["viridis"]
    ax.scatter(fit.n, fit.loss, s=10, c=[cmap(norm(v) * 0.9) for v in fit.d], alpha=0.7)
    ns = np.geomspace(fit.n.min(), fit.n.max(), LINE_POINTS)
    out = []
    for q in (0.0, 0.5, 1.0):
        d = float(np.quantile(fit.d, q))
        line = fit.predict(ns, d)
        ax.plot(ns, line, color=cmap(norm(d) * 0.9), label=f"fit at D = {d:.3g}")
        if fit.draws.size:
            _band(ax, ns, np.array([loss_at(p, ns, d) for p in fit.draws]), cmap(norm(d) * 0.9), labelled=q == 0.0)
        out += [{"n": float(n), "d": d, "fitted": float(v)} for n, v in zip(ns, line)]
    ax.axhline(fit.E, color="#999999", linestyle=":", linewidth=0.8, label=f"E = {fit.E:.3g}")
    _log_axes(ax)
    ax.set_xlabel(f"model size N ({roles.get('n', 'n')})")
    ax.set_ylabel(f"loss ({roles.get('y', 'loss')})")
    ax.figure.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"data D ({roles.get('d', 'd')})")
    figure.legend(ax, 4)
    return out


def _censored(ax, fit, roles) -> list[dict]:
    """Time to success against x: successes as dots, censored trials as triangles at what they ran,
    the fitted median with its band."""
    color = figure.OKABE_ITO[0]
    ok = fit.event
    ax.scatter(fit.x[ok], fit.t[ok], s=10, color="#555555", alpha=0.5, label="succeeded")
    if (~ok).any():
        ax.scatter(fit.x[~ok], fit.t[~ok], s=14, marker="^", facecolors="none", edgecolors="#D55E00",
                   label="censored (never succeeded; drawn at what it ran)")
    xs = np.geomspace(fit.x.min(), fit.x.max(), LINE_POINTS)
    ax.plot(xs, fit.median(xs), color=color, label=f"median ~ x^{fit.exponent:.3g} (censoring-aware)")
    if fit.draws.size:
        _band(ax, xs, np.array([t0 * xs ** b for b, t0, _ in fit.draws]), color)
    if fit.ols is not None:
        lx, lt = np.log(fit.x[ok]), np.log(fit.t[ok])
        ax.plot(xs, np.exp(lt.mean() + fit.ols * (np.log(xs) - lx.mean())), color="#999999", linestyle="--",
                label=f"least squares on the successes alone: x^{fit.ols:.3g}")
    _finish(ax, roles, "time to success", 4)
    return [{"x": float(x), "fitted_median": float(v)} for x, v in zip(xs, fit.median(xs))]


def _kaplan_meier(ax, fit, roles) -> list[dict]:
    """P(not yet succeeded) against time, one step curve per x (Kaplan-Meier), the fit's dashed."""
    from scipy.stats import norm

    values = np.unique(fit.x)
    colors = figure.colors(len(values))
    out = []
    for value, color in zip(values, colors):
        at = fit.x == value
        km = kaplan_meier(fit.t[at], fit.event[at]).to_pylist()
        times = [0.0, *(r["time"] for r in km)]
        survival = [1.0, *(r["survival"] for r in km)]
        ax.step(times, survival, where="post", color=color, label=f"{roles.get('x', 'x')}={value:g}")
        ts = np.geomspace(max(fit.t.min(), 1e-12), fit.t.max(), LINE_POINTS)
        ax.plot(ts, norm.sf((np.log(ts) - np.log(fit.median(value))) / fit.sigma), color=color, linestyle="--", linewidth=0.8)
        out += [{"x": float(value), "time": r["time"], "survival": r["survival"], "lo": r["lo"], "hi": r["hi"]} for r in km]
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(roles.get("y", "time"))
    ax.set_ylabel("P(not yet succeeded)")
    ax.set_title("Kaplan-Meier (steps); fitted log-normal dashed", fontsize="small")
    figure.legend(ax, len(values), outside=len(values) > 6)
    return out


def _residuals(ax, fit, report) -> None:
    points = fit.points()
    x = points.column("n" if report.form == "chinchilla" else "x").to_numpy()
    r = points.column("residual").to_numpy()
    if report.form == "censored":
        cens = points.column("censored").to_numpy(zero_copy_only=False)
        ax.scatter(x[~cens], r[~cens], s=8, color="#555555", alpha=0.5, label="succeeded")
        ax.scatter(x[cens], r[cens], s=12, marker="^", facecolors="none", edgecolors="#D55E00",
                   label="censored (a lower bound)")
        figure.legend(ax, 2)
    else:
        ax.scatter(x, r, s=8, color="#555555", alpha=0.6)
    ax.axhline(0, color="#999999", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(report.roles.get("n" if report.form == "chinchilla" else "x", "x"))
    ax.set_ylabel("residual (log)")

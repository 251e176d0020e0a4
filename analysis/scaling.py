"""The fit forms of `paretolab fit` and `paretolab optimal` over their data: a sweep in the store, or
any table (a CSV or Parquet file, a pyarrow Table, a pandas or polars frame).

Forms (docs/scaling.md says which to use when):

- `power`: y = a x**b by least squares on log-log over the trials that succeeded (`fit.py`);
- `chinchilla`: L(N, D) = E + A / N**alpha + B / D**beta (`chinchilla.py`); `optimal` from it;
- `broken`: a smoothly broken power law y(x) with 1 or 2 breaks (`broken.py`);
- `censored`: time to success against x, trials that never succeeded right-censored (`censored.py`).

From a sweep, a point is a trial that did not fail: `chinchilla` takes its `n_params` (N), the tokens
it trained on (D: `samples` x tokens per example, which `flops_per_sample / (6 n_params)` records;
`samples` where that is not recorded) and its final loss (`final_test_loss`, else the one final
metric with "loss" in its name); `broken` its x and y columns; `censored` its cost to success, or,
for a trial that never succeeded, what it ran (steps, samples, or samples x FLOPs per example).
Any column may be named instead with the form's flags. From a table, the flags name columns or
DuckDB expressions over them (`--n "params * 1e6"`).

Each form returns a `FitReport`: its parameters with 95% bootstrap intervals, its goodness of fit,
the points it used with fitted values and residuals, and warnings; per group of `by`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from paretolab.analysis.intervals import CI_PERCENTILES
from paretolab.analysis.cells import COMPARED, check_axes, comparing, costs_sql, open_sweep
from paretolab.store import Store
from paretolab.store.store import ident
from paretolab.vocabulary.errors import UsageError
from paretolab.vocabulary.schema import COST_COLUMNS, FLOPS_PER_PARAM_PER_TOKEN

FORMS = ("power", "chinchilla", "broken", "censored")
# what each form reads, by role: the flag that names it
ROLES = {"power": ("x", "y"), "chinchilla": ("n", "d", "y"), "broken": ("x", "y"), "censored": ("x", "y", "event")}
RUN_LENGTH = {"steps_to_success": "steps", "samples_to_success": "samples"}  # what a censored trial ran


@dataclass
class FitReport:
    """A form's fit, per group: `fits[i]` is the fit of `groups[i]` (a dict of the `by` values)."""

    form: str
    by: tuple[str, ...]
    groups: list[dict]
    fits: list
    roles: dict[str, str] = field(default_factory=dict)  # the column or expression each role read

    def parameters(self) -> pa.Table:
        """One row per group and parameter: the by columns, parameter, estimate, lo, hi, n_boot, meaning."""
        return _stacked(self.groups, [f.parameters() for f in self.fits])

    def points(self) -> pa.Table:
        """The points each group's fit used, with fitted values and residuals."""
        return _stacked(self.groups, [f.points() for f in self.fits])

    def goodness(self) -> pa.Table:
        """One row per group: n_points and the form's measures of fit (`rmse_log`, `r2_log`, ...)."""
        return pa.Table.from_pylist([{**g, **f.goodness()} for g, f in zip(self.groups, self.fits)])

    def warnings(self) -> list[str]:
        return [f"{_name(g)}{w}" for g, f in zip(self.groups, self.fits) for w in f.warnings]

    def predict(self, at: list) -> pa.Table:
        """The fit's prediction at each point of `at` (x values; for chinchilla (N, D) pairs), per
        group, with its 95% bootstrap band (`lo`, `hi`: the resampled fits' predictions) and whether
        the point lies outside the data (`extrapolated`).

        Raises:
            UsageError: a point that is not positive numbers (pairs for chinchilla).
        """
        return _stacked(self.groups, [_predicted(self.form, f, at) for f in self.fits])

    def optimal(self, budgets) -> pa.Table:
        """A chinchilla fit's compute-optimal N*, D* and loss per budget (`ChinchillaFit.optimal`), per group.

        Raises:
            UsageError: not a chinchilla fit; bad budgets; a fit without an optimum.
        """
        if self.form != "chinchilla":
            raise UsageError(f"the compute-optimal allocation comes from a chinchilla fit, not a {self.form} one")
        return _stacked(self.groups, [f.optimal(budgets) for f in self.fits])


def fit_sweep(store: Store, sweep, form: str, x: str | None = None, y: str | None = None, n: str | None = None,
              d: str | None = None, by: list[str] | None = None, breaks: int = 1, n_boot: int = 1000, seed: int = 0,
              success: str | None = None, starts: int | None = None) -> FitReport:
    """Fit `form` over the trials of `sweep` (see the module docstring for the defaults). `starts`:
    chinchilla only, BFGS from the best `starts` of its grid (`chinchilla.fit_chinchilla`).

    Raises:
        StoreError: unknown sweep. UsageError: unknown form, column or axis; data the form cannot fit.
    """
    _check_form(form)
    by = tuple(by or ())
    if comparing(store, sweep) and COMPARED not in by:
        by = (COMPARED, *by)
    with open_sweep(store, sweep, success) as (con, info, criterion):
        check_axes(con, info, by)
        have = {r[0] for r in con.sql("DESCRIBE trials").fetchall()}
        select, roles = _sweep_columns(form, have, x, y, n, d)
        keys = "".join(f"{ident(b)}, " for b in by)
        data = con.sql(f"SELECT {keys}{select} FROM ({costs_sql(con, criterion)}) ORDER BY ALL").to_arrow_table()
    return _fit_groups(form, data, by, roles, breaks, n_boot, seed, starts)


def fit_table(source, form: str, columns: dict[str, str | None], by: list[str] | None = None, breaks: int = 1,
              n_boot: int = 1000, seed: int = 0, starts: int | None = None) -> FitReport:
    """Fit `form` over a table: a CSV or Parquet file's path, a pyarrow Table, or a pandas or polars
    frame. `columns` names, per role of the form (`ROLES`), a column or a DuckDB expression over the
    table's columns (`event` for `censored`: true where the trial succeeded).

    Raises:
        UsageError: unknown form, a role not named, a file that cannot be read, a bad expression.
    """
    import duckdb

    _check_form(form)
    by = tuple(by or ())
    missing = [r for r in ROLES[form] if not columns.get(r)]
    if missing:
        raise UsageError(f"--form {form} --from needs {', '.join('--' + r for r in missing)} (a column or an expression)")
    con = duckdb.connect()
    try:
        con.register("_source", _relation(con, source))
        for text in (*(columns[r] for r in ROLES[form]), *by):
            _one_expression(text)
        keys = "".join(f"{ident(b)}, " for b in by)
        select = ", ".join(f"({columns[r]}) AS _{r}" for r in ROLES[form])
        try:
            data = con.sql(f"SELECT {keys}{select} FROM _source ORDER BY ALL").to_arrow_table()
        except duckdb.Error as e:
            raise UsageError(f"cannot read the columns: {str(e).splitlines()[0]}") from None
    finally:
        con.close()
    return _fit_groups(form, data, by, {r: columns[r] for r in ROLES[form]}, breaks, n_boot, seed, starts)


def _check_form(form: str) -> None:
    if form not in FORMS:
        raise UsageError(f"unknown form {form!r}; known: {', '.join(FORMS)}")


def _relation(con, source):
    """The table to fit, as something DuckDB reads: a file by path, or an Arrow table (frames converted)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"--from {source}: no such file")
        reader = {".csv": "read_csv_auto", ".parquet": "read_parquet", ".pq": "read_parquet"}.get(path.suffix.lower())
        if reader is None:
            raise UsageError(f"--from {source}: a .csv or .parquet file, please")
        try:
            return con.sql(f"SELECT * FROM {reader}(?)", params=[str(path)]).to_arrow_table()
        except Exception as e:  # noqa: BLE001 - DuckDB's reader errors: shown in one line
            raise UsageError(f"--from {source}: cannot read it: {str(e).splitlines()[0]}") from None
    if isinstance(source, pa.Table):
        return source
    if hasattr(source, "to_arrow"):  # polars
        return source.to_arrow()
    if hasattr(source, "to_pandas") or type(source).__name__ == "DataFrame":  # pandas
        return pa.Table.from_pandas(source, preserve_index=False)
    raise UsageError(f"cannot fit a {type(source).__name__}; give a file path, a pyarrow Table or a pandas/polars frame")


def _one_expression(text: str) -> None:
    """A column name or expression, as one SQL expression (no statement hidden in it)."""
    import duckdb

    try:
        statements = duckdb.extract_statements(f"SELECT {text}")
    except duckdb.Error as e:
        raise UsageError(f"not an expression: {text!r} ({str(e).splitlines()[0]})") from None
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise UsageError(f"not one expression: {text!r}")


def _sweep_columns(form: str, have: set[str], x, y, n, d) -> tuple[str, dict[str, str]]:
    """The SELECT list of a form's roles over the costs query, and what each role reads."""
    def column(name: str, role: str) -> str:
        if name not in have:
            raise UsageError(f"--{role} {name!r} is not a column of the sweep's trials; some are: "
                             f"{', '.join(sorted(c for c in have if not c.startswith('_'))[:30])}")
        return ident(name)

    if form == "chinchilla":
        loss = y or ("final_test_loss" if "final_test_loss" in have else
                     next((c for c in sorted(have) if c.startswith("final_") and "loss" in c), None))
        if loss is None:
            raise UsageError("no final loss in the sweep's trials to fit; name one with --y")
        n_col = column(n or "n_params", "n")
        if d:
            d_sql = column(d, "d")
        elif "flops_per_sample" in have and "n_params" in have:  # tokens per example = flops_per_sample / (6 N)
            d_sql = f"samples * flops_per_sample / ({FLOPS_PER_PARAM_PER_TOKEN} * n_params)"
        else:
            d_sql = "samples"
        roles = {"n": n or "n_params", "d": d or "tokens (samples x tokens per example)", "y": loss}
        return f"{n_col} AS _n, {d_sql} AS _d, {column(loss, 'y')} AS _y", roles
    if x is None:
        raise UsageError(f"--form {form} needs --x (an axis of the sweep)")
    if form == "censored":
        cost = y or "steps_to_success"
        if cost not in COST_COLUMNS:
            raise UsageError(f"--form censored fits a cost to success; --y is one of {', '.join(COST_COLUMNS)}")
        ran = RUN_LENGTH.get(cost) or "samples * flops_per_sample"
        return (f"{column(x, 'x')} AS _x, coalesce({ident(cost)}, {ran}) AS _y, {ident(cost)} IS NOT NULL AS _event",
                {"x": x, "y": cost, "event": "succeeded"})
    y = y or "steps_to_success"
    return f"{column(x, 'x')} AS _x, {column(y, 'y')} AS _y", {"x": x, "y": y}


def _fit_groups(form: str, data: pa.Table, by: tuple[str, ...], roles: dict[str, str], breaks: int, n_boot: int,
                seed: int, starts: int | None = None) -> FitReport:
    keys = [tuple(r) for r in zip(*(data.column(b).to_pylist() for b in by))] if by else [()] * len(data)
    order = list(dict.fromkeys(keys)) or [()]
    index = {key: i for i, key in enumerate(order)}
    group_of = np.array([index[k] for k in keys], dtype=int)  # each row's group, found once
    columns = {r: _numbers(data.column(f"_{r}")) for r in ROLES[form]}  # converted once
    groups, fits = [], []
    for i, key in enumerate(order):
        rows = group_of == i
        group = dict(zip(by, key))
        try:
            fits.append(_fit_one(form, {r: v[rows] for r, v in columns.items()}, breaks, n_boot, seed + i, starts))
        except UsageError as e:
            raise UsageError(f"{_name(group)}{e}") from None
        groups.append(group)
    return FitReport(form, by, groups, fits, roles)


def _numbers(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_boolean(column.type):
        return np.array(column.to_pylist(), dtype=object)
    try:
        return column.to_numpy(zero_copy_only=False).astype(float)
    except (TypeError, ValueError, pa.ArrowInvalid):
        raise UsageError(f"a column of type {column.type} is not numbers") from None


def _fit_one(form: str, v: dict[str, np.ndarray], breaks: int, n_boot: int, seed: int, starts: int | None):
    if form == "chinchilla":
        from paretolab.analysis.chinchilla import fit_chinchilla

        keep = np.isfinite(v["n"]) & np.isfinite(v["d"]) & np.isfinite(v["y"]) & (v["n"] > 0) & (v["d"] > 0) & (v["y"] > 0)
        return fit_chinchilla(v["n"][keep], v["d"][keep], v["y"][keep], n_boot=n_boot, seed=seed, starts=starts)
    if form == "censored":
        from paretolab.analysis.censored import fit_censored

        event = np.array([bool(e) for e in v["event"]], dtype=bool)
        keep = np.isfinite(v["x"]) & np.isfinite(v["y"]) & (v["x"] > 0) & (v["y"] > 0)
        return fit_censored(v["x"][keep], v["y"][keep], event[keep], n_boot=n_boot, seed=seed)
    keep = np.isfinite(v["x"]) & np.isfinite(v["y"]) & (v["x"] > 0) & (v["y"] > 0)
    if form == "broken":
        from paretolab.analysis.broken import fit_broken

        return fit_broken(v["x"][keep], v["y"][keep], breaks=breaks, n_boot=n_boot, seed=seed)
    return PowerFit.of(v["x"][keep], v["y"][keep], n_boot, seed)


@dataclass(frozen=True)
class PowerFit:
    """y = a x**b by least squares on log-log (the `power` form over a table: every row is a point)."""

    a: float
    b: float
    x: np.ndarray
    y: np.ndarray
    draws: np.ndarray
    warnings: tuple[str, ...] = ()

    @classmethod
    def of(cls, x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> PowerFit:
        """The least-squares fit of log y on log x, and `n_boot` resampled (exponent, prefactor) pairs."""
        from paretolab.analysis.intervals import resampled

        if len(np.unique(x)) < 2:
            raise UsageError(f"a power law needs 2 distinct x with y > 0; got {len(np.unique(x))}")
        if n_boot < 0:
            raise UsageError(f"n_boot must be >= 0, got {n_boot}")
        lx, ly = np.log10(x), np.log10(y)

        def fit(w: np.ndarray) -> np.ndarray | None:
            mx, my = (w @ lx) / w.sum(), (w @ ly) / w.sum()
            dx = lx - mx
            spread = w @ (dx * dx)
            if spread <= 0:  # a resample with one x: no slope
                return None
            b = (w @ (dx * (ly - my))) / spread
            return np.array([b, 10.0 ** (my - b * mx)])

        b, a = fit(np.ones(len(lx)))
        draws = resampled(len(lx), n_boot, fit, np.random.default_rng(seed)) if n_boot else np.empty((0, 0))
        return cls(float(a), float(b), x, y, draws)

    def parameters(self) -> pa.Table:
        """exponent and prefactor with their 95% bootstrap intervals."""
        from paretolab.analysis.intervals import parameter_table

        return parameter_table(("exponent", "prefactor"), (self.b, self.a), self.draws,
                               ("y grows as x**exponent", "y at x = 1"))

    def points(self) -> pa.Table:
        fitted = self.a * self.x ** self.b
        return pa.table({"x": self.x, "y": self.y, "fitted": fitted, "residual": np.log(self.y) - np.log(fitted)})

    def goodness(self) -> dict:
        r = np.log10(self.y) - np.log10(self.a * self.x ** self.b)
        t = np.log10(self.y)
        sst = float(((t - t.mean()) ** 2).sum())
        return {"n_points": int(len(self.x)), "rmse_log10": float(np.sqrt((r * r).mean())),
                "r2_log": 1 - float((r * r).sum()) / sst if sst > 0 else None}


def _predicted(form: str, fit, at: list) -> pa.Table:
    """One fit's predictions at `at` (see `FitReport.predict`)."""
    from dataclasses import replace

    from paretolab.analysis.chinchilla import loss_at

    pairs = form == "chinchilla"
    points = [tuple(float(v) for v in p) if pairs else (float(p),) for p in at]
    if not points or any(len(p) != (2 if pairs else 1) or not all(np.isfinite(v) and v > 0 for v in p) for p in points):
        raise UsageError(f"predict at positive {'(N, D) pairs, N:D' if pairs else 'values of x'}; got {at!r}")
    rows = []
    for p in points:
        if pairs:
            value = float(fit.predict(*p))
            draws = [float(loss_at(d, *p)) for d in fit.draws] if fit.draws.size else []
            outside = not (fit.n.min() <= p[0] <= fit.n.max() and fit.d.min() <= p[1] <= fit.d.max())
            row = {"n": p[0], "d": p[1]}
        else:
            x = p[0]
            if form == "power":
                value = fit.a * x ** fit.b
                draws = [a * x ** b for b, a in fit.draws] if fit.draws.size else []
            elif form == "broken":
                value = float(fit.predict(x))
                draws = [float(replace(fit, params=d).predict(x)) for d in fit.draws] if fit.draws.size else []
            else:  # censored: the median time to success
                value = float(fit.median(x))
                draws = [t0 * x ** b for b, t0, _ in fit.draws] if fit.draws.size else []
            outside = not (fit.x.min() <= x <= fit.x.max())
            row = {"x": x}
        lo, hi = (float(v) for v in np.percentile(draws, CI_PERCENTILES)) if len(draws) else (None, None)
        rows.append({**row, "predicted": float(value), "lo": lo, "hi": hi, "extrapolated": outside})
    return pa.Table.from_pylist(rows)


def _stacked(groups: list[dict], tables: list[pa.Table]) -> pa.Table:
    """The tables one after another, each with its group's by columns in front."""
    out = []
    for group, table in zip(groups, tables):
        for i, (name, value) in enumerate(group.items()):
            table = table.add_column(i, name, pa.array([value] * len(table)))
        out.append(table)
    return pa.concat_tables(out, promote_options="permissive") if out else pa.table({})


def _name(group: dict) -> str:
    return f"{', '.join(f'{k}={v}' for k, v in group.items())}: " if group else ""

"""paretolab: sweeps of small training runs on Ray, results in Parquet, analysis in DuckDB.

The public API:

- `run(spec, store=...)`: run every trial of a spec (a path, a dict, or a parsed `Sweep`) that the store
  does not hold yet; returns a `RunSummary`. Ray and the workers stay up for the next run in the
  process: `shutdown()` stops them (interpreter exit does too), `with session():` scopes them.
- `open_store(path_or_uri)`: the result store; `.trials(sweep)`, `.metrics(sweep)` and
  `.query(sql)` return pyarrow Tables (`.to_pandas()`, `polars.from_arrow(...)`).
- `load_spec(path)`: read and check a spec without running it; `sweep(**keys)` builds one in code
  from the YAML keys, with the same checks (`run` also takes the dict itself).
- `ParetolabError`: what every error a user can cause is (`paretolab.errors`).
- `paretolab.analysis`: cells, frontiers, luck, phases, fits, plots and the report over a store.

`import paretolab` is light: torch, ray and matplotlib load only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["run", "open_store", "load_spec", "sweep", "session", "shutdown", "ParetolabError"]

from paretolab.vocabulary.errors import ParetolabError


def __getattr__(name: str):
    if name in ("run", "open_store", "session", "shutdown"):
        from paretolab import api

        return getattr(api, name)
    if name == "load_spec":
        from paretolab.spec import load_spec

        return load_spec
    if name == "sweep":
        from paretolab.spec import sweep

        return sweep
    raise AttributeError(f"module 'paretolab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API and the module's dunders (not `annotations` or the subpackages imported so far)."""
    return sorted({*(n for n in globals() if n.startswith("__")), *__all__})

"""paretolab: sweeps of small training runs on Ray, results in Parquet, analysis in DuckDB.

`import paretolab` is light: torch, ray and matplotlib load only when a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["run", "open_store", "load_spec", "ParetolabError"]

from paretolab.vocabulary.errors import ParetolabError


def __getattr__(name: str):
    if name in ("run", "open_store"):
        from paretolab import api

        return getattr(api, name)
    if name == "load_spec":
        from paretolab.spec import load_spec

        return load_spec
    raise AttributeError(f"module 'paretolab' has no attribute {name!r}")

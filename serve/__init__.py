"""`paretolab serve`: a live, read-only web view of a result store.

The server (`app.py`, Starlette on uvicorn) reads the store through `paretolab.analysis` and
`paretolab.store` only; every number is aggregated on the server in DuckDB, so a page receives
tables of cells and groups and figures, never the metric rows. Figures are the analysis's own
matplotlib figures rendered as SVG (`figures.py`); tables are JSON (`data.py`), rendered, sorted
and filtered in the page by a little JavaScript (`static/`). What a page shows is cached per
snapshot of the store (`snapshot.py`): the page polls the store's change signature and refetches
its parts only when the store changed. Manual: docs/serve.md.
"""

"""The result store: append-only Parquet files in a folder or an object store, read through DuckDB views.

The contract (see docs/store.md):

- `Store(root)` (`store.py`): a store at a folder or URI. Readers: `trials(sweep, columns)` and
  `metrics(sweep, trial_ids)` (the views as pyarrow Tables, for pandas or polars),
  `query(sql, params, sweep)` (a pyarrow Table), `read(fn, sweep)` (runs `fn` on a connection over one consistent snapshot,
  retried when a compaction replaced a file mid-way), `connect(sweep)` (the views `trials`,
  `metrics`, `sweeps`, `sweep_trials`, restricted to one sweep if given), and what the
  orchestrator asks before a run: `ended`, `short_curves`, `last_attempts`, `exists`; what an
  adaptive search asks as it runs: `results(trial_ids)` (the ended trials' rows),
  `step_quantiles(trial_ids, metric, q, steps)` (a quantile of a metric per step of their curves,
  for pruning) and `step_span(trial_ids)` (the first and last step their curves reached); the
  search writes no SQL of its own. Writers: `lock()` (one writer at a time), `compact(table)`.
- `StoreWriter(store)` (`writer.py`): the one writer of a run; `append(table, rows)` buffers
  rows, `maybe_flush()`/`flush()` write them, curves before the results they end.
- `files.py`: where the files live (a local folder or any pyarrow filesystem) and how each is
  written whole and sealed; `lease.py`/`flock.py`: the write lock; `doctor.py`: checks and repairs.

The tables' columns are the vocabulary's (`paretolab.vocabulary.schema`). The store imports only
the vocabulary: the orchestrator writes through it and the analysis reads through it.
"""

from paretolab.store.store import Store, check_read_only
from paretolab.store.writer import StoreWriter

__all__ = ["Store", "StoreWriter", "check_read_only"]

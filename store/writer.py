"""The one writer of a run: rows buffered by table, written as sealed Parquet files.

A flush writes the curves (and the sweep's row) before the results that end them, each file whole
and durable before the next is begun, so a killed driver or a full disk leaves curves without
results (their trials run again), never a result without its curve (see `store.py`).
"""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.parquet as pq

from paretolab.store import files as _files
from paretolab.store.store import PARQUET_OPTIONS, Store, new_name

from paretolab.vocabulary.schema import COLUMNS, TABLES

# The order a flush writes the tables in: a trial's curve (and its sweep's row) before its result.
FLUSH_ORDER = ("sweeps", "metrics", "trials")
# A table's schema file: no rows, every column; its name sorts before every data file's (named by
# time: `store.new_name`), so a plain Parquet reader, which takes a folder's schema from its first
# file, sees every column (`StoreWriter._lead`).
SCHEMA_STEM = "0" * 20 + "-schema"


class StoreWriter:
    """Buffers rows per table and appends them as new Parquet files.

    Every buffered table is written when one holds `flush_rows` rows or `flush_every_s` seconds
    have passed since the last write, in `FLUSH_ORDER`: the curves' rows are durable before the
    results that count them (`curve_rows`). Only the process holding `Store.lock()` should write.
    A write that fails (a full disk) keeps its rows buffered and raises `StoreError`.
    """

    def __init__(self, store: Store, flush_rows: int = 50_000, flush_every_s: float = 2.0):
        self.store = store
        self.flush_rows = flush_rows
        self.flush_every_s = flush_every_s
        self._rows: dict[str, list[dict]] = {t: [] for t in TABLES}
        self._types: dict[tuple[str, str], pa.DataType] = {}  # (table, column): the type it was written with
        self._leading: dict[str, set[str]] = {}  # table: the columns of the file that sorts first
        self._first: dict[str, pa.Schema] = {}  # table: the schema of its first file when this writer began
        self._last = time.monotonic()

    def append(self, table: str, rows: list[dict]) -> None:
        self._rows[table].extend(rows)
        if len(self._rows[table]) >= self.flush_rows:
            self.flush()

    def buffered(self, table: str) -> int:
        """Rows of `table` appended and not written yet."""
        return len(self._rows[table])

    def maybe_flush(self) -> None:
        """Write every buffered table if `flush_every_s` has passed since the last write."""
        if time.monotonic() - self._last >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row now, curves before results.

        Raises:
            StoreError: a file cannot be written; the tables after it in `FLUSH_ORDER` are not
                written either (their rows stay buffered).
        """
        for table in FLUSH_ORDER:
            self._write(table)
        self._last = time.monotonic()

    def _write(self, table: str) -> None:
        rows = self._rows[table]
        if not rows:
            return
        self.store._check_writable()
        columns = list(dict.fromkeys(k for r in rows for k in r))
        data = pa.table({c: self._array(table, c, [r.get(c) for r in rows]) for c in columns})
        self._lead(table, data.schema)
        self.store.loc.put((table, new_name()), lambda out: pq.write_table(data, out, **PARQUET_OPTIONS), seal=True)
        self._rows[table] = []

    def _array(self, table: str, column: str, values: list) -> pa.Array:
        """The column's values; all-NULL (a cost no trial reached, an error no trial raised) typed
        as this writer wrote the column before, as the view declares it, or else as a number,
        rather than Parquet's null type, which a reader would show as `NULL`."""
        array = pa.array(values)
        if pa.types.is_null(array.type):
            kind = self._types.get((table, column)) or self._stored(table, column) or _declared(table, column)
            return pa.nulls(len(values), kind or pa.float64())
        self._types[(table, column)] = array.type
        return array

    def _stored(self, table: str, column: str) -> pa.DataType | None:
        """The column's type in the table's first file (its schema file, when it has one: every column),
        read once per table: a sweep without a sparse-parity `train_size` (all NULL) wrote it as a
        number where the store held it as an integer, and polars refused to read the folder."""
        if table not in self._first:
            entries = self.store._live(table)
            first = _files.footer(self.store.loc, entries[0]) if entries else None
            self._first[table] = first if isinstance(first, pa.Schema) else pa.schema([])
        schema = self._first[table]
        return schema.field(column).type if column in schema.names and not pa.types.is_null(
            schema.field(column).type) else None

    def _lead(self, table: str, schema: pa.Schema) -> None:
        """Before a file of `schema` is written: if it has a column the table's first file lacks,
        write the table's schema file (no rows; the union of every live file's columns and these),
        which sorts first, and drop older ones. pyarrow, pandas and DuckDB reading the folder
        itself (`pq.read_table("results/trials")`) then see every column of a store that holds
        sweeps of several tasks, compacted or not; the store's own views read every file's schema."""
        leading = self._leading.get(table)
        if leading is None:
            entries = self.store._live(table)
            if not entries:  # the file about to be written comes first
                self._leading[table] = set(schema.names)
                return
            first = _files.footer(self.store.loc, entries[0])
            leading = self._leading[table] = set(first.names) if isinstance(first, pa.Schema) else set()
        if set(schema.names) <= leading:
            return
        entries = self.store._live(table)
        schemas = [f for f in (_files.footer(self.store.loc, e) for e in entries) if isinstance(f, pa.Schema)]
        union = _union([*schemas, schema])
        empty = union.empty_table()
        path = self.store.loc.put((table, f"{SCHEMA_STEM}.parquet"),
                                  lambda out: pq.write_table(empty, out, **PARQUET_OPTIONS), seal=True)
        for old in entries:
            if old.name.startswith(SCHEMA_STEM) and old.path != path:
                self.store.loc.delete(old.path)
        self._leading[table] = set(union.names)


def _declared(table: str, column: str) -> pa.DataType | None:
    """The Arrow type the schema gives a column of `table`, if it names the column."""
    sql = {"VARCHAR": pa.string(), "BIGINT": pa.int64(), "BOOLEAN": pa.bool_(), "DOUBLE": pa.float64(),
           "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"), "VARCHAR[]": pa.list_(pa.string())}
    return next((sql[kind] for name, kind in COLUMNS[table] if name == column), None)


def _union(schemas: list[pa.Schema]) -> pa.Schema:
    """Every column of `schemas`, in order of appearance, each with a type all its files' values cast
    to: their common type, or text where they have none (a parameter `loss: hinge` in one sweep, a
    metric `loss` in another)."""
    try:
        return pa.unify_schemas(schemas, promote_options="permissive").remove_metadata()
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    fields: dict[str, list[pa.DataType]] = {}
    for s in schemas:
        for f in s:
            fields.setdefault(f.name, []).append(f.type)
    out = []
    for name, types in fields.items():
        try:
            out.append(pa.unify_schemas([pa.schema([(name, t)]) for t in types], promote_options="permissive").field(0))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            out.append(pa.field(name, pa.string()))
    return pa.schema(out)

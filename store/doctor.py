"""`paretolab doctor`: find what a full disk or a crash left in a store, and move it aside.

It checks, under the store's write lock (so never while a run writes):

- every Parquet file of every table, with both engines: its seal (the CRC-32 in its name), every
  page through pyarrow with its checksum, and every value through DuckDB (the queries' engine on a
  local store). One that fails any is moved to `<store>/_quarantine/<table>/`;
- temporary files (`.<name>.tmp`): with the lock held no write is in flight, so any is a leftover of
  a killed run. One that is complete and reads in full (a run killed between fsync and rename)
  holds rows that reached no other file: it is published under its final name. Moved aside
  instead: one that does not read, one whose rows were written again since (its trials ran
  again under the same attempt), and an unfinished compaction's (the files it merges are live);
- files that a merged file replaced but that are still there (a compaction killed before it
  deleted them) are moved aside, since their rows are in the merged file;
- the legacy compaction manifest (`_compactions.json`): an entry whose merged file does not exist
  is dropped (the files it names stay live); a manifest that does not parse is moved aside and
  rebuilt from the files themselves (a file all of whose rows are in a later file was merged
  into it);
- trials recorded as ended whose curve has fewer rows than they reported (`Store.short_curves`):
  reported; the next run of their sweep runs them again.

Nothing is ever deleted. Queries skip unreadable files meanwhile; the store is a cache, so a rerun
of the sweep runs again the trials whose rows were lost (`Store.ended`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from paretolab.store import files as _files
from paretolab.store import Store
from paretolab.store.store import MANIFEST, QUARANTINE, REPLACES, TABLES
from paretolab.vocabulary.errors import StoreError


@dataclass(frozen=True)
class Finding:
    """One problem: the file (as a user would type it), what is wrong, and what was (or would be) done."""

    table: str
    file: str
    problem: str
    action: str


def doctor(store: Store, repair: bool = True) -> list[Finding]:
    """Check every file of `store`; with `repair`, move bad ones to `<store>/_quarantine/<table>/`
    and publish complete temporary files.

    Returns:
        What was found, in table order; empty when the store is clean.
    Raises:
        StoreError: no store there, or a run is writing it.
    """
    if not store.exists():
        raise StoreError(f"no result store at {store.uri}")
    with store.lock():
        found = [f for table in TABLES for f in _check_table(store, table, repair)]
        if repair or not found:  # (with --check, curves are counted over files that may be moved)
            found += _short_curves(store)
        return found


def _check_table(store: Store, table: str, repair: bool) -> list[Finding]:
    loc, found = store.loc, []

    def aside(entry: _files.FileEntry, problem: str) -> None:
        dest = f"{QUARANTINE}/{table}/{entry.name}"
        if repair:
            loc.move(entry.path, QUARANTINE, table, entry.name)
        found.append(Finding(table, loc.show(entry.path), problem, f"{'moved' if repair else 'to move'} to {dest}"))

    for entry in loc.list(table):
        reason = _files.full_read_error(loc, entry)
        if reason is not None:
            _files.mark_unreadable(loc, entry, reason)
            aside(entry, f"unreadable ({reason})")
    for entry in loc.list(table, suffix=".tmp"):
        reason = _unpublishable(store, table, entry)
        if reason is not None:
            aside(entry, f"temporary file left by a run that was killed while writing ({reason})")
        else:
            dest = loc.restore(entry) if repair else "its final name"
            found.append(Finding(table, loc.show(entry.path), "a complete temporary file left by a run killed "
                                 "before it published it", f"{'published as' if repair else 'to publish as'} "
                                 f"{PurePosixPath(dest).name if repair else dest}"))
    found += _check_manifest(store, table, repair, aside, {f.file for f in found})
    return found


def _check_manifest(store: Store, table: str, repair: bool, aside, reported: set[str]) -> list[Finding]:
    """The files compactions replaced; `reported`: files already found bad (still there with --check)."""
    loc, found = store.loc, []
    present = {e.name: e for e in loc.list(table) if loc.show(e.path) not in reported}
    try:
        manifest = store._manifest(table)
    except StoreError:
        path = loc.path(table, MANIFEST)
        manifest = _rebuilt_manifest(store, table, list(present.values()))
        found.append(Finding(table, loc.show(path), "corrupt (does not parse)",
                             f"{'moved' if repair else 'to move'} to {QUARANTINE}/{table}/{MANIFEST} and "
                             f"{'rebuilt' if repair else 'to rebuild'} from the files ({len(manifest)} merged)"))
        if repair:
            loc.move(path, QUARANTINE, table, MANIFEST)
            body = json.dumps(manifest).encode()
            loc.put((table, MANIFEST), lambda out: out.write(body))
    kept = {}
    for merged, replaced in manifest.items():
        if merged not in present:
            found.append(Finding(table, loc.show(loc.path(table, MANIFEST)),
                                 f"names the merged file {merged}, which does not exist",
                                 f"{'dropped' if repair else 'to drop'} that entry (the files it names stay live)"))
            continue
        kept[merged] = replaced
    replaced_by = {f: merged for merged, replaced in kept.items() for f in replaced}
    for e in present.values():
        schema = _files.footer(loc, e)
        if isinstance(schema, pa.Schema) and schema.metadata and REPLACES in schema.metadata:
            replaced_by.update((f, e.name) for f in json.loads(schema.metadata[REPLACES]))
    for name, merged in replaced_by.items():
        if name in present:
            aside(present[name], f"replaced by {merged} (a compaction stopped before deleting it)")
    if repair and kept != manifest and loc.read_bytes(table, MANIFEST) is not None:
        body = json.dumps(kept).encode()
        loc.put((table, MANIFEST), lambda out: out.write(body))
    return found


def _unpublishable(store: Store, table: str, tmp: _files.FileEntry) -> str | None:
    """Why a temporary file must not be published (None: it may)."""
    if not store.loc.local:
        return "not on a local disk"
    if (reason := _files.full_read_error(store.loc, tmp)) is not None:
        return f"incomplete: {reason}"
    schema = pq.read_schema(tmp.path)
    if schema.metadata and REPLACES in schema.metadata:
        return "an unfinished compaction: the files it merges are live"
    keys = {"metrics": ("trial_id", "attempt", "step"), "trials": ("trial_id", "attempt")}.get(table)
    if keys is None or not set(keys) <= set(schema.names) or not store.files(table):
        return None
    con = store.connect(writes_files=True)
    try:
        on = " AND ".join(f"a.{k} IS NOT DISTINCT FROM t.{k}" for k in keys)
        again = con.execute(f"SELECT count(*) FROM read_parquet(?) t WHERE EXISTS "
                            f"(SELECT 1 FROM {table}_all a WHERE {on})", [tmp.path]).fetchall()[0][0]
    finally:
        con.close()
    return f"{again} of its rows were written again since" if again else None


def _rebuilt_manifest(store: Store, table: str, entries: list[_files.FileEntry]) -> dict[str, list[str]]:
    """{merged: [replaced]} from the files themselves: a readable file all of whose rows are in a
    later, larger file was merged into it (how a compaction names and fills its file)."""
    import duckdb

    good = [e for e in entries if isinstance(_files.footer(store.loc, e), pa.Schema)]
    manifest: dict[str, list[str]] = {}
    with duckdb.connect() as con:
        for e in good:
            for later in reversed([m for m in good if m.name > e.name and m.size >= e.size]):
                cols = ", ".join(f'"{c}"' for c in _files.footer(store.loc, e).names)
                missing = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM read_parquet(?) EXCEPT ALL "
                                      f"SELECT {cols} FROM read_parquet(?, union_by_name = true))",
                                      [e.path, later.path]).fetchall()[0][0]
                if missing == 0:
                    manifest.setdefault(later.name, []).append(e.name)
                    break
    return manifest


def _short_curves(store: Store) -> list[Finding]:
    short = store.short_curves()
    if not short:
        return []
    shown = ", ".join(f"{r['trial_id']} ({r['rows']} of {r['curve_rows']} rows)" for r in short[:3])
    more = f" and {len(short) - 3} more" if len(short) > 3 else ""
    return [Finding("trials", store.loc.show(store.loc.path("trials")),
                    f"{len(short)} trial(s) recorded as ended have curves cut short: {shown}{more}",
                    "the next run of their sweep runs them again")]

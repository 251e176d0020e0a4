"""`paretolab doctor`: find what a full disk or a crash left in a store, and move it aside.

It checks, under the store's write lock (so never while a run writes):

- every Parquet file of every table, its footer and every row: one that does not read is moved to
  `<store>/_quarantine/<table>/`;
- temporary files (`.<name>.tmp`): with the lock held no write is in flight, so any is a leftover of
  a killed run;
- the compaction manifest: an entry whose merged file does not exist is dropped (the files it
  names stay live); files that a merged file replaced but that are still there (a compaction
  killed before it deleted them) are moved aside, since their rows are in the merged file.

Nothing is ever deleted. Queries skip unreadable files meanwhile; the store is a cache, so a rerun
of the sweep runs again the trials whose rows were lost (`Store.ended`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from paretolab.analysis import files as _files
from paretolab.analysis.store import MANIFEST, QUARANTINE, TABLES, Store
from paretolab.errors import StoreError


@dataclass(frozen=True)
class Finding:
    """One problem: the file (as a user would type it), what is wrong, and what was (or would be) done."""

    table: str
    file: str
    problem: str
    action: str


def doctor(store: Store, repair: bool = True) -> list[Finding]:
    """Check every file of `store`; with `repair`, move bad ones to `<store>/_quarantine/<table>/`.

    Returns:
        What was found, in table order; empty when the store is clean.
    Raises:
        StoreError: no store there, or a run is writing it.
    """
    if not store.exists():
        raise StoreError(f"no result store at {store.uri}")
    with store.lock():
        return [f for table in TABLES for f in _check_table(store, table, repair)]


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
        aside(entry, "temporary file left by a run that was killed while writing")
    present = {e.name: e for e in loc.list(table)} if repair else {
        e.name: e for e in loc.list(table) if not any(f.file == loc.show(e.path) for f in found)}
    manifest = store._manifest(table)
    kept = {}
    for merged, replaced in manifest.items():
        if merged not in present:
            found.append(Finding(table, loc.show(loc.path(table, MANIFEST)),
                                 f"names the merged file {merged}, which does not exist",
                                 f"{'dropped' if repair else 'to drop'} that entry (the files it names stay live)"))
            continue
        kept[merged] = replaced
        for name in replaced:
            if name in present:
                aside(present[name], f"replaced by {merged} (a compaction stopped before deleting it)")
    if repair and kept != manifest:
        body = json.dumps(kept).encode()
        loc.put((table, MANIFEST), lambda out: out.write(body))
    return found

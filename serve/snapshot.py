"""The store's change signature, and a cache of what the pages show, keyed by it.

The store's files are immutable and appear whole (a new name, or a merged file that replaces
others): the names and sizes of the live listing of its three tables change exactly when a query
could answer differently. Listing is one directory read per table on a disk and one LIST request
per table on an object store, so the signature is cheap to poll; it is computed at most once per
`SIGNATURE_TTL_S` however many pages poll it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from paretolab.store import Store
from paretolab.vocabulary.schema import TABLES

T = TypeVar("T")
SIGNATURE_TTL_S = 1.0  # several pages polling every 2 s list the store at most once a second
CACHE_ENTRIES = 256  # results kept (figures, tables) across signatures; the oldest used go first
# Parts computed at once: as many as a browser asks for at once (6 connections per host). A
# figure spends most of its time waiting for a renderer process (`figures.RENDERERS`), the
# database's parts are short; with 3 at once, the frontier and luck of an update waited 0.5 s for a
# turn while the phase diagram waited for its drawing (benchmarks/serve.py).
COMPUTING_AT_ONCE = 6
# A part a page asked for within this long is computed again as soon as a poll finds the store
# changed, before the page asks: the page's update then waits for less than the whole computation.
REFRESH_WITHIN_S = 60
RECENT_PARTS = 64  # parts remembered for that


class Snapshots:
    """The signature of `store` and a cache of results per (signature, key). Thread-safe: handlers
    run on a thread pool, and two requests for the same key compute it once (the second waits)."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._signed: tuple[float, str] | None = None
        self._results: OrderedDict[tuple, object] = OrderedDict()
        self._pending: dict[tuple, threading.Lock] = {}
        self._computing = threading.BoundedSemaphore(COMPUTING_AT_ONCE)
        self._recent: OrderedDict[Hashable, tuple[float, Callable]] = OrderedDict()
        self._refreshing = False

    def signature(self) -> str:
        """A short hash of the names and sizes of the store's live files (`""` before it exists)."""
        with self._lock:
            if self._signed and time.monotonic() - self._signed[0] < SIGNATURE_TTL_S:
                return self._signed[1]
        digest = hashlib.blake2b(digest_size=8)
        if self.store.exists():
            for table in TABLES:
                for entry in self.store.loc.list(table):
                    digest.update(f"{table}/{entry.name}:{entry.size}\n".encode())
        signature = digest.hexdigest()
        with self._lock:
            changed = self._signed is not None and self._signed[1] != signature
            self._signed = (time.monotonic(), signature)
        if changed:
            self._refresh()
        return signature

    def _refresh(self) -> None:
        """Compute again, in the background, the parts asked for recently (`REFRESH_WITHIN_S`)."""
        with self._lock:
            if self._refreshing:  # the pass under way goes round again for the new signature
                return
            self._refreshing = True
        threading.Thread(target=self._refresh_all, name="paretolab-serve-refresh", daemon=True).start()

    def _refresh_all(self) -> None:
        try:
            while True:
                with self._lock:
                    signature = self._signed[1]
                    now = time.monotonic()
                    parts = [(k, make) for k, (at, make) in self._recent.items() if now - at < REFRESH_WITHIN_S]
                with ThreadPoolExecutor(COMPUTING_AT_ONCE, thread_name_prefix="paretolab-serve-refresh") as pool:
                    list(pool.map(lambda part: self._quietly(*part), parts))
                with self._lock:
                    if self._signed[1] == signature:
                        return
        finally:
            with self._lock:
                self._refreshing = False

    def _quietly(self, key: Hashable, make: Callable) -> None:
        try:
            self.cached(key, make, asked=False)
        except Exception:  # noqa: BLE001  the page's own request reports it
            pass

    def cached(self, key: Hashable, make: Callable[[], T], asked: bool = True) -> T:
        """`make()` computed once per signature of the store for `key` (`asked`: by a page, so it
        is computed again when the store changes)."""
        full = (self.signature(), key)
        with self._lock:
            if asked:
                self._recent[key] = (time.monotonic(), make)
                self._recent.move_to_end(key)
                while len(self._recent) > RECENT_PARTS:
                    self._recent.popitem(last=False)
            if full in self._results:
                self._results.move_to_end(full)
                return self._results[full]
            gate = self._pending.setdefault(full, threading.Lock())
        with gate:
            with self._lock:
                if full in self._results:
                    return self._results[full]
            try:
                with self._computing:
                    value = make()
            except BaseException:
                with self._lock:
                    self._pending.pop(full, None)
                raise
            with self._lock:
                self._results[full] = value
                self._pending.pop(full, None)
                while len(self._results) > CACHE_ENTRIES:
                    self._results.popitem(last=False)
            return value

    def holds(self, key: Hashable) -> bool:
        """Whether the answer for `key` at the store's current signature is computed."""
        with self._lock:
            return self._signed is not None and (self._signed[1], key) in self._results

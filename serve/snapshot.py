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
from contextlib import nullcontext
from typing import TypeVar

from paretolab.store import Store
from paretolab.vocabulary.schema import TABLES

T = TypeVar("T")
SIGNATURE_TTL_S = 1.0  # several pages polling every 2 s list the store at most once a second
CACHE_ENTRIES = 256  # results kept (figures, tables) across signatures; the oldest used go first
# Tables (a figure's numbers too) computed at once: as many as a browser asks for at once (6
# connections per host). A figure is drawn by a renderer process (`figures.RENDERERS`) and takes
# no turn here.
COMPUTING_AT_ONCE = 6
# A part a page asked for within this long is computed again as soon as a poll finds the store
# changed, before the page asks: the page's update then waits for less than the whole computation.
REFRESH_WITHIN_S = 60
RECENT_PARTS = 64  # parts remembered for that
# A figure waits, before it is computed, while a table is (this long at most): the tables (counts,
# cells, transitions) then arrive within a fraction of a second, and the figures, which take most
# of the server's time, after them. Without it, an update's four figures took the cores from its
# tables: the tables of an update arrived after 0.8-1.1 s, not 0.3-0.5 s (benchmarks/serve.py).
TABLES_FIRST_S = 2.0
# While a page asked for a part within `REFRESH_WITHIN_S`, the server lists the store itself this
# often (`Snapshots.watch`): a change starts the refresh then, not at a page's next poll.
WATCH_EVERY_S = SIGNATURE_TTL_S
# After the parts of a change were computed again, in t seconds, the next change of the store is
# shown (its signature) no sooner than `PACE` x t later: where an update costs seconds of CPU (10^5
# trials: about 3 CPU-s, 1.5 s on two cores), the view takes at most about half of the machine
# from a run that writes the store on it, however often the driver flushes; a page then updates
# every 3 s or so, not every 2. A small store's update takes milliseconds: no delay is seen.
PACE = 1.0
FIGURE = "fig:"  # what the kind in a figure's key starts with (`TABLES_FIRST_S`)
HOLD_AT_MOST_S = 30.0  # a change is held back this long at most (a part that hangs on a slow store holds nothing longer)


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
        self._tables = 0  # tables being computed now (`TABLES_FIRST_S`)
        self._tables_done = threading.Condition(self._lock)
        self._held_until = 0.0  # a change of the store is shown from then on (`PACE`)

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
            now = time.monotonic()
            changed = self._signed is not None and self._signed[1] != signature
            if changed and now < self._held_until:  # the last change's parts just took long (`PACE`)
                self._signed = (min(now, self._held_until - SIGNATURE_TTL_S), self._signed[1])  # listed again then
                return self._signed[1]
            self._signed = (now, signature)
        if changed:
            self._refresh()
        return signature

    def watch(self) -> Callable[[], None]:
        """List the store every `WATCH_EVERY_S` in a background thread while a page asked for a part
        within `REFRESH_WITHIN_S`: a driver's flush starts the refresh of those parts when it
        lands, and a page that polls `signature` every 2 s finds them computed, or under way,
        instead of starting them. No page open (none asked for a minute): the store is not listed.

        Returns:
            A function that stops the watching.
        """
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(WATCH_EVERY_S):
                with self._lock:
                    now = time.monotonic()
                    watched = any(now - at < REFRESH_WITHIN_S for at, _ in self._recent.values())
                if watched:
                    try:
                        self.signature()
                    except Exception:  # noqa: BLE001  a store unreadable for a moment: the next pass lists it again
                        pass

        threading.Thread(target=loop, name="paretolab-serve-watch", daemon=True).start()
        return stop.set

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
                    self._held_until = time.monotonic() + HOLD_AT_MOST_S  # none shown while this one's parts are computed
                started = time.monotonic()
                try:
                    with ThreadPoolExecutor(COMPUTING_AT_ONCE, thread_name_prefix="paretolab-serve-refresh") as pool:
                        for figures in (False, True):  # the tables, then the figures (`TABLES_FIRST_S`)
                            list(pool.map(lambda part: self._quietly(*part), [p for p in parts if _is_figure(p[0]) == figures]))
                finally:
                    with self._lock:
                        ended = time.monotonic()
                        self._held_until = ended + min(PACE * (ended - started), HOLD_AT_MOST_S)
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
            table = not _is_figure(key)
            with self._lock:
                if table:
                    self._tables += 1
                else:
                    self._tables_done.wait_for(lambda: self._tables == 0, timeout=TABLES_FIRST_S)
            try:
                # a figure's own time is a renderer's (`figures.RENDERERS`); its numbers, computed
                # inside it, are a table and wait for a turn here themselves
                with self._computing if table else nullcontext():
                    value = make()
            except BaseException:
                with self._lock:
                    self._pending.pop(full, None)
                raise
            finally:
                if table:
                    with self._lock:
                        self._tables -= 1
                        self._tables_done.notify_all()
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


def _is_figure(key: Hashable) -> bool:
    """Whether a part's key is a figure's: `(FIGURE + kind, query)`, as `serve.app` keys them."""
    return isinstance(key, tuple) and bool(key) and isinstance(key[0], str) and key[0].startswith(FIGURE)

"""The write lock of a store on an object store, where there is no `flock`: a lease object.

`<store>/_lease.json` names its holder (a random owner id, host, pid) and an expiry. The holder
rewrites it every `LEASE_TTL_S / 3` seconds from a background thread. Another run refuses while the
lease is fresh and takes over one that has not been refreshed for `LEASE_TTL_S` (its holder died),
saying so. Object stores offer no compare-and-swap through pyarrow, so two runs starting within the
same instant could both write a lease; each reads it back after writing, and the refresher of a
run that finds another owner's lease stops that run's writes (`Lease.check` raises).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
import warnings

from paretolab.store.files import Location, StoreWarning
from paretolab.vocabulary.errors import StoreError

LEASE = "_lease.json"
LEASE_TTL_S = 60.0


class Lease:
    """A held lease; `release()` gives it back."""

    def __init__(self, loc: Location, ttl_s: float = LEASE_TTL_S):
        self.loc, self.ttl_s = loc, ttl_s
        self.owner = uuid.uuid4().hex
        self.lost_to: dict | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, name="paretolab-lease", daemon=True)

    def acquire(self) -> Lease:
        """Take the lease.

        Raises:
            StoreError: another run holds a fresh lease, or the store cannot be written.
        """
        held = self._read()
        if held and held["owner"] != self.owner:
            if held["expires_at"] > time.time():
                raise StoreError(f"the store {self.loc.uri} is being written by another paretolab run "
                                 f"({_who(held)}, lease fresh for {held['expires_at'] - time.time():.0f} s more); "
                                 f"wait for it or use another --store")
            warnings.warn(f"taking over the write lease of {self.loc.uri} from {_who(held)}: it was not "
                          f"refreshed for {self.ttl_s:.0f} s", StoreWarning, stacklevel=3)
        self._write()
        mine = self._read()
        if not mine or mine["owner"] != self.owner:
            raise StoreError(f"the store {self.loc.uri} is being written by another paretolab run "
                             f"({_who(mine or {})}); wait for it or use another --store")
        self._thread.start()
        return self

    def check(self) -> None:
        """Raises StoreError when another run has taken the lease over."""
        if self.lost_to is not None:
            raise StoreError(f"lost the write lease of {self.loc.uri} to {_who(self.lost_to)}; "
                             f"stopped writing (rerun to resume)")

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        held = self._read()
        if held and held["owner"] == self.owner:
            self.loc.delete(self.loc.path(LEASE))

    def _refresh(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                held = self._read()
                if held and held["owner"] != self.owner:
                    self.lost_to = held
                    return
                self._write()
            except (OSError, StoreError):  # a transient failure: the next refresh is well inside the TTL
                continue

    def _read(self) -> dict | None:
        data = self.loc.read_bytes(LEASE)
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None

    def _write(self) -> None:
        body = json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires_at": time.time() + self.ttl_s}).encode()
        self.loc.put((LEASE,), lambda out: out.write(body))


def _who(held: dict) -> str:
    return f"pid {held.get('pid', '?')} on {held.get('host', '?')}"

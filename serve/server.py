"""Start the web view on a socket: loopback by default; beyond it, behind a token.

The socket is bound here, before uvicorn starts, so a port in use is one clear error (and port 0
takes any free one, whose number the printed address then shows).
"""

from __future__ import annotations

import ipaddress
import secrets
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from paretolab.store import Store
from paretolab.vocabulary.errors import UsageError

DEFAULT_PORT = 8765
TOKEN_BYTES = 24  # 192 random bits, URL-safe text


@dataclass(frozen=True)
class Bound:
    """A listening socket and what to print: the address to open, with the token if there is one."""

    sock: socket.socket
    url: str
    token: str | None
    loopback: bool


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> Bound:
    """Listen on `host`:`port`; beyond loopback, with a fresh random token.

    Raises:
        UsageError: a bad port, a host that does not resolve, or a port in use.
    """
    if not 0 <= port <= 65535:
        raise UsageError(f"--port takes 0 to 65535 (0: any free port), got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"cannot listen on --host {host!r}: {e.strerror}; pass an address of this machine "
                         "(127.0.0.1, the default, or 0.0.0.0 for every interface)") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror.lower() if e.strerror else e}; "
                         "pass another --port (0 takes any free one)") from None
    actual = sock.getsockname()[1]
    loopback = is_loopback(host)
    token = None if loopback else secrets.token_urlsafe(TOKEN_BYTES)
    shown = host if loopback else (socket.gethostname() if host in ("0.0.0.0", "::") else host)
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{actual}/" + (f"?token={token}" if token else "")
    return Bound(sock, url, token, loopback)


def _read_ahead(store: Store) -> None:
    """Read the store's files now, before the address is printed: a snapshot's database and the
    memo of its curves (`serve.shared`), which the first page would otherwise wait for (about 1 s
    on a 10^7-row store); later snapshots read their new files only."""
    from paretolab.vocabulary.errors import ParetolabError

    if store.exists():
        try:
            store.connect().close()
        except ParetolabError:  # a store being written for the first time: the pages say what they can
            pass


def run(store: Store, bound: Bound, say: Callable[[str], None] = print) -> None:
    """Serve `store` on `bound` until Ctrl-C (or SIGTERM)."""
    import uvicorn

    from paretolab.serve.app import LOOPBACK_HOSTS, create_app

    app = create_app(store, token=bound.token, hosts=LOOPBACK_HOSTS if bound.loopback else None)
    from paretolab.serve import figures  # imported, and its renderers started, now: not by the first page (1-2 s)

    figures.start_renderers()
    _read_ahead(app.state.snapshots.store)
    stop_watching = app.state.snapshots.watch()
    say(f"serving {store.uri} at {bound.url}")
    if bound.token:
        say("anyone who can reach this machine could open it: every request needs the token above "
            "(it is printed once; a new one each start)")
    say("Ctrl-C stops it")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    # uvicorn stops on SIGTERM, then raises it again with the handler it found: with the default
    # one, the process would end there, before the renderers are stopped (and their pool reported
    # as leaked); this one makes SIGTERM end the server as Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        uvicorn.Server(config).run(sockets=[bound.sock])
    finally:
        stop_watching()
        figures.stop_renderers()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt

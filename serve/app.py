"""The web application: pages, JSON tables, SVG figures, and the gate in front of them.

Routes (every one reads; none writes the store or runs SQL a request brings):

    /                       the sweeps page            /api/sweeps     its table
    /sweep?s=A[&s=B]        a sweep, or several compared side by side
    /trial?id=T             one trial
    /api/signature          the store's change signature (the pages poll it)
    /api/meta, /api/status, /api/cells, /api/transitions, /api/failures, /api/spec   (?s=...)
    /api/trial?id=T
    /fig/phase.svg, /fig/frontier.svg, /fig/curves.svg, /fig/luck.svg   (?s=...)   /fig/trial.svg?id=T
    /api/phase, /api/frontier, /api/curves, /api/luck (?s=...), /api/trial_curve?id=T: the numbers
                            each figure draws, as JSON (the figure is drawn from the same answer)

Bad input (an unknown sweep, axis, metric, column) answers 404 or 400 with the analysis's own
one-line message (JSON `{"error": ...}` under /api, plain text under /fig), so a page shows why.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from paretolab.analysis import plot_numbers
from paretolab.serve import data, figures, pages
from paretolab.serve.shared import SharedSnapshots
from paretolab.serve.snapshot import FIGURE, Snapshots
from paretolab.store import Store
from paretolab.vocabulary.errors import ParetolabError, StoreError, UsageError

STATIC = Path(__file__).parent / "static"
COOKIE = "paretolab_token"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
NO_CACHE = {"Cache-Control": "no-cache"}
# Each figure's address; its numbers are at /api/<kind> (a trial's at /api/trial_curve: /api/trial
# is the trial's row). `pages` links the numbers under each figure.
FIGURE_PATHS = {"phase": "/fig/phase.svg", "frontier": "/fig/frontier.svg", "luck": "/fig/luck.svg",
                "curves": "/fig/curves.svg", "trial_curve": "/fig/trial.svg"}


def create_app(store: Store, token: str | None = None, hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> Starlette:
    """The application over `store`.

    Args:
        token: when given, every request must carry it (`?token=`, the cookie a page visit with it
            sets, or `Authorization: Bearer`); for a server reachable beyond this machine.
        hosts: the Host header values accepted (None: any). On loopback this refuses pages of other
            sites that resolve their own name to 127.0.0.1 (DNS rebinding) from reading the store.
    """
    store = SharedSnapshots(store)  # one database per snapshot of the files, a cursor per query
    snaps = Snapshots(store)

    def cached(kind: str, request: Request, make, asked: bool = True):
        # `v` (the signature a page saw, so that a browser never reuses an old answer) and a token
        # are not part of what is asked: the cache is keyed by the signature already
        key = (kind, tuple(sorted((k, v) for k, v in request.query_params.multi_items() if k not in ("v", "token"))))
        return snaps.cached(key, make, asked=asked)

    def api(kind: str, make, show=lambda value: value):
        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            def answer():
                return show(cached(kind, request, lambda: make(request)))

            return JSONResponse(await run_in_threadpool(answer), headers=NO_CACHE)
        return endpoint

    # What each figure draws, computed here with DuckDB like a table (answered as JSON under /api),
    # and the function a renderer process makes the figure from it with (`figures.svg`).
    numbers = {
        "phase": lambda r: plot_numbers.phase_numbers(store, s(r), x=_opt(r, "x"), y=_opt(r, "y")),
        "frontier": lambda r: plot_numbers.frontier_numbers(store, s(r), x=_opt(r, "x"), by=_one(r, "by")),
        "luck": lambda r: plot_numbers.luck_numbers(store, s(r), by=_one(r, "by")),
        "curves": lambda r: data.curve_bands(store, s(r), by=_opt(r, "by"), x=r.query_params.get("x") or "step",
                                             metric=_opt(r, "metric")),
        "trial_curve": lambda r: data.trial_curve(store, _arg(r, "id")),
    }
    drawers = {"phase": figures.analysis_figure, "frontier": figures.analysis_figure, "luck": figures.analysis_figure,
               "curves": figures.bands_figure, "trial_curve": figures.trial_figure}

    def fig(kind: str):
        def figure_of(request: Request) -> bytes:
            def numbers_of(asked: bool):
                return cached(kind, request, lambda: numbers[kind](request), asked=asked)

            # its numbers, asked for as a table: on a change they are computed again with the
            # tables, before any figure is drawn (`snapshot.TABLES_FIRST_S`)
            numbers_of(asked=True)
            return cached(FIGURE + kind, request, lambda: figures.svg(drawers[kind], numbers_of(asked=False)))

        async def endpoint(request: Request) -> Response:
            from starlette.concurrency import run_in_threadpool

            body = await run_in_threadpool(figure_of, request)
            return Response(body, media_type="image/svg+xml", headers=NO_CACHE)
        return endpoint

    async def signature(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        return JSONResponse({"signature": await run_in_threadpool(snaps.signature)}, headers=NO_CACHE)

    async def sweeps_page(request: Request) -> Response:
        return Response(pages.sweeps_page(store.uri), media_type="text/html")

    async def sweep_page(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        names = await run_in_threadpool(lambda: data.known_sweep(store, _sweep(request)))
        return Response(pages.sweep_page(store.uri, [names] if isinstance(names, str) else list(names)),
                        media_type="text/html")

    async def trial_page(request: Request) -> Response:
        return Response(pages.trial_page(store.uri, _arg(request, "id")), media_type="text/html")

    s = _sweep
    routes = [
        Route("/", sweeps_page),
        Route("/sweep", sweep_page),
        Route("/trial", trial_page),
        Route("/api/signature", signature),
        Route("/api/sweeps", api("sweeps", lambda r: data.sweeps(store))),
        Route("/api/meta", api("meta", lambda r: data.meta(store, s(r)))),
        Route("/api/status", api("status", lambda r: data.sweep_status(store, s(r)))),
        Route("/api/cells", api("cells", lambda r: data.cells_table(
            store, s(r), sort=r.query_params.get("sort") or None, descending=r.query_params.get("desc") == "1",
            filters={k[2:]: v for k, v in r.query_params.multi_items() if k.startswith("f.")},
            limit=_int(r, "limit", 100), offset=_int(r, "offset", 0)))),
        Route("/api/transitions", api("transitions", lambda r: data.transitions_summary(store, s(r), by=_opt(r, "by")))),
        Route("/api/failures", api("failures", lambda r: data.failures(store, s(r)))),
        Route("/api/spec", api("spec", lambda r: data.specs(store, s(r)))),
        Route("/api/trial", api("trial", lambda r: data.trial(store, _arg(r, "id")))),
        *(Route(f"/api/{kind}", api(kind, make, data.numbers_json)) for kind, make in numbers.items()),
        *(Route(FIGURE_PATHS[kind], fig(kind)) for kind in numbers),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))] if hosts else []
    if token:
        middleware.append(Middleware(TokenGate, token=token))
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={ParetolabError: _error})
    app.state.snapshots = snaps
    return app


def _sweep(request: Request) -> str | list[str]:
    names = [n for n in request.query_params.getlist("s") if n]
    if not names:
        raise UsageError("name the sweep: ?s=NAME (several ?s= compare sweeps side by side)")
    return names[0] if len(names) == 1 else names


def _arg(request: Request, key: str) -> str:
    value = request.query_params.get(key)
    if not value:
        raise UsageError(f"missing ?{key}=")
    return value


def _opt(request: Request, key: str) -> str | None:
    return request.query_params.get(key) or None


def _one(request: Request, key: str) -> tuple[str, ...]:
    """`?key=A` as (A,); absent or empty: () (a figure's one group)."""
    value = _opt(request, key)
    return (value,) if value else ()


def _int(request: Request, key: str, default: int) -> int:
    text = request.query_params.get(key)
    try:
        return int(text) if text else default
    except ValueError:
        raise UsageError(f"?{key}= takes a whole number, got {text!r}") from None


async def _error(request: Request, exc: ParetolabError) -> Response:
    message = str(exc)
    code = 404 if isinstance(exc, StoreError) and message.startswith(("unknown sweep", "unknown trial", "no result store")) else 400
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=code)
    if request.url.path.startswith("/fig/"):
        return PlainTextResponse(message, status_code=code)
    return Response(pages.error_page(message), status_code=code, media_type="text/html")


class TokenGate:
    """Refuses (401) every request without the server's token. A page opened with `?token=` is
    answered with the token as a cookie (HttpOnly, SameSite=Strict) and a redirect to the same
    address without it, so the token leaves the address bar and the history, and the page's own
    requests carry the cookie."""

    def __init__(self, app, token: str):
        self.app, self.token = app, token

    def _ok(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        if self._ok(request.cookies.get(COOKIE)) or self._ok(auth.removeprefix("Bearer ").strip() if auth else None):
            return await self.app(scope, receive, send)
        if self._ok(request.query_params.get("token")):
            if request.method == "GET" and not request.url.path.startswith(("/api/", "/fig/", "/static/")):
                kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + ("?" + "&".join(f"{_q(k)}={_q(v)}" for k, v in kept) if kept else "")
                response = RedirectResponse(target, status_code=303)
                response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
            else:
                return await self.app(scope, receive, send)
        else:
            response = PlainTextResponse("this server needs its token: open the address `paretolab serve` printed "
                                         "(it ends with ?token=...)", status_code=401)
        await response(scope, receive, send)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")

"""The console as an ASGI application: ``console_app(...)``.

Served by ``microhive console`` (uvicorn), or mounted into a program's own Starlette or
FastAPI application: ``app.mount("/console", console_app(broker="redis://..."))``. It
connects on its first request (a mounted application gets no lifespan events of its own);
``async with console.running():`` in the host's lifespan connects up front and closes the
connections at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..agent.agent import MicroAgent
from ..broker import QueueBroker
from ..bus import SignalBus
from ..catalog import Catalog
from ..errors import ConfigurationError, MicroHiveError
from ..tasks.store import ResultStore
from ..tasks.stores.engines import open_engine_store
from .auth import Auth, parse_user
from .jobs import JobsFeed
from .letters import NoSuchLetter, letter_data, listing, operate, selection_from
from .monitor import Monitor, watched_names

STATIC = Path(__file__).parent / "static"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; "
     b"style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
     b"form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip


OFFLINE = ("/login", "/api/session", "/api/logout", ".js", ".css")
"""Paths served without the hive (the login page, its script, the session)."""


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return dumps(content).encode()


class Console(Starlette):
    """The console application; :attr:`monitor` once started."""

    def __init__(
        self,
        bus: SignalBus | str | None,
        broker: QueueBroker | str,
        auth: Auth,
        *,
        queues: Sequence[str] = (),
        signals: Sequence[str] = (),
        every: float = 1.0,
        results: ResultStore | str | None = None,
    ) -> None:
        self.auth = auth
        self._results = results
        self._bus = bus
        self._broker = broker
        self._queues = queues
        self._signals = signals
        self._every = every
        self._monitor: Monitor | None = None
        self._lock = asyncio.Lock()
        super().__init__(routes=self._routes(), exception_handlers=self._handlers())

    @property
    def monitor(self) -> Monitor:
        if self._monitor is None:
            raise HTTPException(503, "the console has not connected yet")
        return self._monitor

    async def start(self) -> None:
        """Connect to the bus and broker and start sampling (once; idempotent)."""
        async with self._lock:
            if self._monitor is not None:
                return
            own_bus, own_broker = isinstance(self._bus, str), isinstance(self._broker, str)
            bus = SignalBus.from_url(self._bus) if isinstance(self._bus, str) else self._bus
            broker = (
                QueueBroker.from_url(self._broker)
                if isinstance(self._broker, str)
                else self._broker
            )
            jobs = None
            if self._results is not None:
                store = (
                    open_engine_store(self._results)
                    if isinstance(self._results, str)
                    else self._results
                )
                jobs = JobsFeed(store, own=isinstance(self._results, str))
            monitor = Monitor(
                bus, broker, queues=self._queues, signals=self._signals, every=self._every,
                own=own_broker, own_bus=own_bus, jobs=jobs,
            )  # fmt: skip
            try:
                await monitor.start()
            except BaseException:
                await monitor.close()
                raise
            self._monitor = monitor

    async def close(self) -> None:
        async with self._lock:
            if self._monitor is not None:
                await self._monitor.close()
                self._monitor = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Console]:
        """Connected for the duration of the block (for a host application's lifespan)."""
        await self.start()
        try:
            yield self
        finally:
            await self.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http" and not scope["path"].endswith(OFFLINE):
            try:
                await self.start()
            except (MicroHiveError, OSError) as exc:
                await JSON({"error": f"cannot reach the hive: {exc}"}, 503)(scope, receive, send)
                return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await super().__call__(scope, receive, secured)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Served on its own: connect at startup, close at shutdown."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routes ---------------------------------------------------------------------------

    def _routes(self) -> list[Route | Mount]:
        return [
            Route("/", self.index),
            Route("/login", self.login_page),
            Route("/api/session", self.session),
            Route("/api/login", self.login, methods=["POST"]),
            Route("/api/logout", self.logout, methods=["POST"]),
            Route("/api/overview", self.overview),
            Route("/api/events", self.events),
            Route("/api/queues", self.queues),
            Route("/api/jobs", self.jobs),
            Route("/api/queues/{queue}/dead", self.dead_letters),
            Route("/api/queues/{queue}/dead/{verb:str}", self.change, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]

    def _handlers(self) -> dict[Any, Any]:
        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return JSON({"error": exc.detail}, exc.status_code, headers=exc.headers)

        async def bad_input(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc)}, 400)

        async def not_found(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc.args[0] if exc.args else exc)}, 404)

        async def engine_error(request: Request, exc: Exception) -> Response:
            return JSON({"error": str(exc) or type(exc).__name__}, 502)

        return {
            HTTPException: http_error,
            ConfigurationError: bad_input,
            NoSuchLetter: not_found,
            MicroHiveError: engine_error,
            OSError: engine_error,
        }

    async def index(self, request: Request) -> Response:
        if self.auth.viewer(request) is None:
            return RedirectResponse("login", 303)
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-store"})

    async def login_page(self, request: Request) -> Response:
        return FileResponse(STATIC / "login.html", headers={"cache-control": "no-store"})

    async def session(self, request: Request) -> Response:
        viewer = self.auth.viewer(request)
        return JSON(
            {
                "logged_in": viewer is not None and viewer.who is not None,
                "may_view": viewer is not None,
                "who": viewer.who if viewer is not None else None,
                "csrf": viewer.session.csrf if viewer and viewer.session else None,
                **self.auth.mode(),
            }
        )

    async def login(self, request: Request) -> Response:
        self.auth.same_site(request)
        body = await _body(request)
        fields = {k: body.get(k) for k in ("token", "user", "password")}
        if not all(v is None or isinstance(v, str) for v in fields.values()):
            raise ConfigurationError("token, user and password must be strings")
        who = None if self.auth.open else self.auth.check(**fields)
        if who is None:
            await self.auth.refused()
            why = "nothing to log in to: no --token or --user" if self.auth.open else "wrong"
            raise HTTPException(401, f"login refused ({why})")
        key, session = self.auth.login(who)
        response = JSON({"logged_in": True, "who": who, "csrf": session.csrf})
        self.auth.set_cookie(key, request, response)
        return response

    async def logout(self, request: Request) -> Response:
        self.auth.same_site(request)
        viewer = self.auth.require_viewer(request)
        self.auth.check_csrf(request, viewer)
        response = JSON({"logged_in": False})
        self.auth.logout(request, response)
        return response

    async def overview(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        return JSON(self.monitor.snapshot())

    async def events(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        monitor = self.monitor

        async def stream() -> AsyncIterator[dict[str, str]]:
            async with monitor.hub.stream() as queue:
                yield {"event": "snapshot", "data": dumps(monitor.snapshot())}
                while True:
                    yield {"event": "tick", "data": dumps(await queue.get())}

        return EventSourceResponse(stream(), ping=15, headers={"cache-control": "no-store"})

    async def queues(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        return JSON([series.last() for series in self.monitor.sampler.series.values()])

    async def jobs(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        feed = self.monitor.jobs
        if feed is None:
            raise HTTPException(404, "no result store: give --results (a Redis or NATS URL)")
        query = request.query_params
        try:
            limit = int(query.get("limit") or 100)
            listed = await feed.listing(query.get("queue"), query.get("state"), limit)
        except ValueError as exc:
            raise ConfigurationError(f"bad jobs query: {exc}") from None
        return JSON({"jobs": listed})

    def _queue(self, request: Request) -> str:
        name = str(request.path_params["queue"])
        if name not in self.monitor.queue_names():
            raise HTTPException(404, f"the console does not watch a queue {name!r}")
        return name

    async def dead_letters(self, request: Request) -> Response:
        self.auth.require_viewer(request)
        queue = self._queue(request)
        query = request.query_params
        body: dict[str, Any] = {"reason": query.get("reason") or None}
        for field, kind in (("older_than", float), ("limit", int)):
            if query.get(field):
                try:
                    body[field] = kind(query[field])
                except ValueError:
                    raise ConfigurationError(f"{field} must be a number") from None
        letters = await listing(self.monitor.broker, queue, selection_from(body))
        return JSON({"queue": queue, "letters": [letter_data(letter) for letter in letters]})

    async def change(self, request: Request) -> Response:
        self.auth.require_writer(request)
        verb = request.path_params["verb"]
        if verb not in ("requeue", "purge"):
            raise HTTPException(404, f"no dead-letter operation {verb!r} (requeue or purge)")
        queue = self._queue(request)
        done = await operate(self.monitor.broker, verb, queue, await _body(request))
        self.monitor.sampler.dead_changed(queue)
        return JSON(done)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ConfigurationError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ConfigurationError("the request body must be a JSON object")
    return body


def console_app(
    *,
    transport: str | None = None,
    bus: SignalBus | str | None = None,
    broker: QueueBroker | str | None = None,
    catalog: Catalog | None = None,
    agents: Iterable[type[MicroAgent]] = (),
    queues: Iterable[str] = (),
    signals: Iterable[str] = (),
    token: str | None = None,
    user: str | None = None,
    read_only: bool = False,
    every: float = 1.0,
    results: ResultStore | str | None = None,
) -> Console:
    """The console for one hive, as an ASGI application.

    ``bus``/``broker`` are URLs (the console connects and closes them) or a program's own
    bus and broker (borrowed, left open); ``transport`` is the URL of both. It watches the
    queues and signals of ``catalog`` and of the ``agents`` classes, ``queues`` and
    ``signals`` named, and what running agents' heartbeats report. ``token`` or ``user``
    (``"name:password"``) enable the login that changes need; without either it is
    read-only. ``results`` (a result store, or its Redis or NATS URL) adds the tasks' jobs.
    """
    if every <= 0:
        raise ConfigurationError("every= must be a number of seconds > 0")
    broker_given = broker if broker is not None else transport
    if broker_given is None:
        raise ConfigurationError("console_app() needs broker= (or transport=)")
    bus_given = bus if bus is not None else transport
    named_queues, named_signals = watched_names(catalog, list(agents))
    auth = Auth(token=token or None, user=parse_user(user) if user else None, read_only=read_only)
    return Console(
        bus_given,
        broker_given,
        auth,
        queues=[*queues, *named_queues],
        signals=[*signals, *named_signals],
        every=every,
        results=results,
    )

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
from collections.abc import AsyncIterator, Iterable, Sequence

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..agent.agent import MicroAgent
from ..agent.plain import target_of
from ..broker import QueueBroker
from ..bus import SignalBus
from ..catalog import Catalog
from ..errors import ConfigurationError, MicroHiveError
from ..tasks.store import ResultStore
from ..tasks.stores import store_for
from ..tasks.stores.engines import open_engine_store
from ..transports.memory import MemoryBroker
from .api import JSON, STATIC, Endpoints
from .auth import Auth, parse_user
from .jobs import JobsFeed
from .monitor import Monitor, watched_names

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


class Console(Endpoints, Starlette):
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
        expected: Sequence[str] = (),
    ) -> None:
        self.auth = auth
        self._expected = expected
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
            elif isinstance(broker, MemoryBroker):  # the in-process hive's own jobs
                jobs = JobsFeed(store_for(broker), own=False)
            monitor = Monitor(
                bus, broker, queues=self._queues, signals=self._signals, every=self._every,
                own=own_broker, own_bus=own_bus, jobs=jobs, expected=self._expected,
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
    read-only. ``results`` (a result store, or its Redis or NATS URL) adds the tasks' jobs;
    on ``memory://`` the hive's own store is read without it.
    """
    if every <= 0:
        raise ConfigurationError("every= must be a number of seconds > 0")
    broker_given = broker if broker is not None else transport
    if broker_given is None:
        raise ConfigurationError("console_app() needs broker= (or transport=)")
    bus_given = bus if bus is not None else transport
    agents = list(agents)
    named_queues, named_signals = watched_names(catalog, agents)
    auth = Auth(token=token or None, user=parse_user(user) if user else None, read_only=read_only)
    return Console(
        bus_given,
        broker_given,
        auth,
        queues=[*queues, *named_queues],
        signals=[*signals, *named_signals],
        every=every,
        results=results,
        expected=[target_of(cls) for cls in agents],
    )

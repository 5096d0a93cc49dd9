"""Agents, their bus and their broker, started and stopped as one inside a web process.

A web app is a long-running process with its own lifecycle (an ASGI lifespan, a WSGI
server's main loop); :class:`WebHive` is the part both integrations share: it builds the
bus and broker from URLs, starts the agents (upstream ones last, as ``microhive run``
does), opens live views of queues for the pages, and stops it all in the reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Self

from ..agent.agent import MicroAgent
from ..broker import QueueBroker
from ..bus import SignalBus
from ..catalog import Catalog, load_stuff
from ..declarations import Queue, Signal
from ..errors import ConfigurationError
from ..middleware import Middleware
from ..settings import DEFAULT_TRANSPORT
from .views import Latest, Tail, View, follow

log = logging.getLogger("microhive.web")

AgentFactory = Callable[[SignalBus, QueueBroker], MicroAgent]
"""An agent class, or any callable that builds an agent from the hive's bus and broker
(``functools.partial(Satellite, settings={"name": "AQUA"})``)."""

CatalogSource = Catalog | str | os.PathLike[str]


class WebHive:
    """Agents plus the bus and broker they share, for one web process.

    ``transport`` is the URL of both; ``bus`` and ``broker`` override it (the Kafka broker has
    no signals: ``broker="kafka://..."`` keeps the bus on ``transport``, ``memory://`` by
    default). ``catalog`` declares signals and queues (a :class:`Catalog` or the seed's JSON
    files). Agents are listed upstream first, as for ``microhive run``. ``grace_period`` is
    the longest any agent's in-flight handlers get when the hive stops.
    """

    def __init__(
        self,
        *agents: AgentFactory,
        transport: str = DEFAULT_TRANSPORT,
        bus: str | None = None,
        broker: str | None = None,
        catalog: CatalogSource | Sequence[CatalogSource] | None = None,
        grace_period: float = 10.0,
        middleware: Iterable[Middleware] = (),
        name: str = "web",
    ) -> None:
        self.factories = list(agents)
        self.bus_url = bus or transport
        self.broker_url = broker or transport
        self.catalog = _catalog(catalog)
        self.grace_period = grace_period
        self.middleware = list(middleware)
        self.name = name
        self.agents: list[MicroAgent] = []
        self._bus: SignalBus | None = None
        self._broker: QueueBroker | None = None
        self._views: dict[tuple[Any, ...], View] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"<WebHive {self.name!r}: {len(self.factories)} agent(s)>"

    @property
    def bus(self) -> SignalBus:
        """The hive's signal bus (for ``await hive.bus.user_enter.send(...)``)."""
        if self._bus is None:
            raise RuntimeError(f"{self!r} is not running: start it first")
        return self._bus

    @property
    def broker(self) -> QueueBroker:
        """The hive's queue broker (for ``await hive.broker.post.send(...)``)."""
        if self._broker is None:
            raise RuntimeError(f"{self!r} is not running: start it first")
        return self._broker

    @property
    def running(self) -> bool:
        return self._broker is not None

    async def start(self) -> None:
        """Connect, then start every agent; on a failure, stop what started and raise."""
        if self._broker is not None:
            raise RuntimeError(f"{self!r} is already running")
        signals, queues = self.catalog
        bus = SignalBus.from_url(self.bus_url, signals=signals, middleware=self.middleware)
        broker = QueueBroker.from_url(self.broker_url, queues=queues, middleware=self.middleware)
        self._bus, self._broker = bus, broker
        try:
            await bus.connect()
            await broker.connect()
            # built here, so that a bad factory stops the start like a failing agent does
            agents = [factory(bus, broker) for factory in self.factories]
            for agent in reversed(agents):  # upstream first in the list: started last
                agent.grace_period = min(agent.grace_period, self.grace_period)
                await agent.start()
                self.agents.insert(0, agent)
        except BaseException:
            await self.stop()
            raise
        log.info("%r running on bus %r, broker %r", self, bus, broker)

    async def stop(self) -> None:
        """Stop the agents (upstream first), end the views, close the connections. Safe to
        call twice and after a failed start."""
        for agent in list(self.agents):
            try:
                await agent.stop()
            except Exception as exc:
                log.error("%r did not stop cleanly: %s", agent, exc)
        self.agents.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._views.clear()
        bus, broker, self._bus, self._broker = self._bus, self._broker, None, None
        for connection in (bus, broker):
            if connection is not None:
                try:
                    await connection.close()
                except Exception as exc:
                    log.error("%r did not close cleanly: %s", connection, exc)

    def tail(self, queue: Queue | str, *, last: int, key: str | None = None) -> Tail:
        """A :class:`Tail` of the last ``last`` messages of ``queue`` (of ``key``'s), kept
        following new ones until the hive stops. The same arguments give the same view, so a
        page callback may ask for it on every refresh. The view holds ``last`` messages (at
        least 1). Call it in the hive's event loop (from threads: :meth:`Host.tail`)."""
        if isinstance(last, int) and not isinstance(last, bool) and last < 1:
            raise ConfigurationError("a tail view holds the last `last` messages: last >= 1")
        name = queue.name if isinstance(queue, Queue) else queue
        found = self._views.get(("tail", name, last, key))
        if isinstance(found, Tail):
            return found
        broker = self.broker
        broker.tail(queue, last=last, key=key)  # raises now on a bad name or argument
        view = Tail(name, last, key)
        self._open(
            ("tail", name, last, key), view, lambda n: broker.tail(queue, last=n, key=key), last
        )
        return view

    def latest(self, queue: Queue | str, *, last: int = 1000) -> Latest:
        """A :class:`Latest`: the newest message of each key of ``queue``, starting from the
        last ``last`` messages (a key silent for longer shows up when it sends again)."""
        name = queue.name if isinstance(queue, Queue) else queue
        found = self._views.get(("latest", name, last))
        if isinstance(found, Latest):
            return found
        broker = self.broker
        broker.tail(queue, last=last)
        view = Latest(name, last)
        self._open(("latest", name, last), view, lambda n: broker.tail(queue, last=n), last)
        return view

    def _open(
        self, ident: tuple[Any, ...], view: View, source: Callable[[int], Any], replay: int
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self!r}: open views in the hive's event loop (from threads: Host)"
            ) from None
        task = loop.create_task(follow(view, source, replay), name=f"microhive-view-{view!r}")
        self._views[ident] = view
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def send(self, queue: Queue | str, payload: Any, **options: Any) -> str:
        """``broker.send`` with the hive's name as sender; returns the message id."""
        options.setdefault("sender", self.name)
        return await self.broker.send(queue, payload, **options)

    async def signal(self, signal: Signal | str, **kwargs: Any) -> None:
        """Broadcast a signal on the hive's bus, sent by the hive's name."""
        await self.bus.send(signal, self.name, **kwargs)

    async def call(self, signal: Signal | str, *, timeout: float = 60, **kwargs: Any) -> Any:
        """A call over the hive's bus: the first answer, or :class:`CallTimeout`."""
        return await self.bus.call(signal, self.name, timeout=timeout, **kwargs)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def _catalog(source: CatalogSource | Sequence[CatalogSource] | None) -> Catalog:
    if source is None:
        return Catalog.empty()
    if isinstance(source, Catalog):
        return source
    if isinstance(source, str | os.PathLike):
        return load_stuff(source)
    merged = Catalog.empty()
    for item in source:
        merged = merged.merged(_catalog(item))
    return merged

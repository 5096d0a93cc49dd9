"""One AMQP connection per process, that reconnects by itself, and the pipelines on it.

Every bus and broker of a process that names the same server (same URL without microhive's
options) on the same event loop shares one :class:`Link`: one TCP connection, channels as
needed. aiormq speaks the protocol; this module adds

- a supervisor task that connects, and after a loss reconnects with capped exponential
  backoff, in a loop (never recursion), then lets every registered resource re-declare what
  it needs (queues, bindings, consumers);
- the channels every user of the connection shares: one for declarations and queries, and
  two :class:`~.pipeline.Pipeline` (frames of many callers in one write; one of them with
  the publisher-confirm window).

The reconnect policy and :class:`LinkDown` are every engine's (:mod:`..links`); the first
connect gives up after the URL's ``connect_timeout``, later reconnects never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable

import aiormq
import aiormq.exceptions as amqp_errors

from ... import linkevents
from ...errors import ConfigurationError, TransportError
from ..links import RECONNECT, LinkDown
from .options import AmqpOptions
from .pipeline import Pipeline
from .reader import CONNECTING
from .reader import install as buffered_frames

log = logging.getLogger("microhive.amqp")


class _QuietReconnects(logging.Filter):
    """aiormq logs every failed connection attempt at ERROR; the link's own warnings say it
    once per outage (and every 20 attempts), so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_QuietReconnects())

_LINKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Link]] = (
    weakref.WeakKeyDictionary()
)


class AccessRefused(TransportError):
    """RabbitMQ refused the credentials, the virtual host, or an operation."""


def broken(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or a channel with it) went away."""
    if isinstance(exc, amqp_errors.AuthenticationError | amqp_errors.ProbableAuthenticationError):
        return False
    return isinstance(
        exc,
        amqp_errors.AMQPConnectionError
        | amqp_errors.ChannelInvalidStateError
        | ConnectionError
        | OSError
        | LinkDown
        | EOFError,
    ) or (isinstance(exc, amqp_errors.ChannelClosed) and not exc.args)


def cancelled_by_link(exc: BaseException) -> bool:
    """aiormq fails pending futures with CancelledError when it closes: not our cancellation."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() == 0


Resource = Callable[[int], Awaitable[None]]
"""Called with the connection's generation after each (re)connect: re-declare, re-consume."""


async def acquire(options: AmqpOptions) -> Link:
    """The process's link to ``options``' server, started and counted; :class:`LinkDown`
    when it cannot connect within ``options.connect_timeout``."""
    links = _LINKS.setdefault(asyncio.get_running_loop(), {})
    link = links.get(options.connection_url)
    if link is None or link.closed:
        link = links[options.connection_url] = Link(options)
    link.refs += 1
    try:
        await link.start(options.connect_timeout)
    except BaseException:
        await release(link)
        raise
    return link


async def release(link: Link) -> None:
    link.refs -= 1
    if link.refs <= 0:
        links = _LINKS.get(asyncio.get_running_loop(), {})
        if links.get(link.options.connection_url) is link:
            del links[link.options.connection_url]
        await link.close()


class Link:
    """One connection, reconnected by a supervisor task; see the module docstring."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self.refs = 0
        self.closed = False
        self.connection: aiormq.Connection | None = None
        self.generation = 0
        self.resources: dict[object, Resource] = {}
        self._up = asyncio.Event()
        self._first: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._confirms: Pipeline | None = None
        self._fire: Pipeline | None = None
        self._rpc: aiormq.abc.AbstractChannel | None = None
        self._opening: dict[str, asyncio.Lock] = {}
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Link {self.options.safe_url} {'up' if self.up else 'down'}>"

    @property
    def up(self) -> bool:
        return self._up.is_set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, budget: float) -> None:
        """Start the supervisor (once) and wait up to ``budget`` seconds for the connection.

        Raises :class:`AccessRefused` at once for bad credentials or virtual host, and
        :class:`LinkDown` when no connection could be made in time (the supervisor keeps
        trying for other users of the link; the last :func:`release` stops it).
        """
        if self._task is None:
            self._first = self._loop.create_future()
            self._task = self._loop.create_task(self._supervise(), name=f"amqp-link {self!r}")
        if self.up:
            return
        assert self._first is not None
        try:
            async with asyncio.timeout(budget):
                await asyncio.shield(self._first)
        except TimeoutError:
            raise LinkDown(
                f"could not connect to {self.options.safe_url} within {budget:g} s "
                "(connect_timeout)"
            ) from None

    async def close(self) -> None:
        for pipeline in (self._confirms, self._fire):  # what was sent goes out first
            if pipeline is not None and self.up:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pipeline.drain(), 5)
        self.closed = True
        linkevents.closed(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pipeline in (self._confirms, self._fire):
            if pipeline is not None:
                await pipeline.close()
        connection, self.connection = self.connection, None
        self._up.clear()
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 5)

    async def ensure(self, deadline: float | None = None) -> aiormq.Connection:
        """The open connection; waits for a reconnect until ``deadline`` (loop time)."""
        if self.closed:
            raise LinkDown(f"connection to {self.options.safe_url} was closed")
        if deadline is None:
            deadline = self._loop.time() + self.options.retry_timeout
        while True:
            connection = self.connection
            if self.up and connection is not None and not connection.is_closed:
                return connection
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise LinkDown(f"RabbitMQ at {self.options.safe_url} is unreachable")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._up.wait()
            if self.closed:
                raise LinkDown(f"connection to {self.options.safe_url} was closed")

    def register(self, key: object, resource: Resource) -> None:
        """Call ``resource(generation)`` after every reconnect (not the first connect)."""
        self.resources[key] = resource

    def unregister(self, key: object) -> None:
        self.resources.pop(key, None)

    async def _supervise(self) -> None:
        """Connect; after a loss, connect again with capped backoff; in a loop, forever."""
        attempt = 0
        lost_at: float | None = None
        while not self.closed:
            connection = await self._connect_once(attempt)
            if connection is None:
                attempt += 1
                continue
            attempt = 0
            self.connection = connection
            self.generation += 1
            self._rpc = None
            self._confirms = self._fire = None
            self._up.set()
            linkevents.restored(self)
            if self._first is not None and not self._first.done():
                self._first.set_result(None)
            elif lost_at is not None:
                buses = any(getattr(key, "inbox", None) for key in self.resources)
                log.warning(
                    "reconnected to RabbitMQ at %s after %.2f s%s",
                    self.options.safe_url,
                    self._loop.time() - lost_at,
                    "; signals published meanwhile were lost" if buses else "",
                )
                await self._resume(self.generation)
            await self._until_lost(connection)
            lost_at = self._loop.time()

    def _fail_first(self, error: Exception) -> None:
        """Make :meth:`start` raise ``error`` when the very first connect cannot succeed."""
        if self._first is not None and not self._first.done():
            self._first.set_exception(error)
            self._first.exception()
        log.error("%s", error)

    async def _connect_once(self, attempt: int) -> aiormq.Connection | None:
        """One connection attempt; None (after the backoff delay) when it failed."""
        buffered_frames()  # the frame reader of every connection: reader.py
        try:
            connection = aiormq.Connection(
                self.options.connection_url,
                client_properties={"connection_name": self.options.connection_name},
            )
        except Exception as exc:  # the URL itself: retrying cannot help
            self._fail_first(
                ConfigurationError(f"bad AMQP URL {self.options.safe_url}: {type(exc).__name__}")
            )
            self.closed = True
            return None
        try:
            connecting = CONNECTING.set(connection)  # its frame reader knows whose it is
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    await connection.connect()
            finally:
                CONNECTING.reset(connecting)
            return connection
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), 1)
            delay = RECONNECT.delay(attempt + 1)
            if isinstance(
                exc,
                amqp_errors.AuthenticationError
                | amqp_errors.ProbableAuthenticationError
                | amqp_errors.ConnectionNotAllowed,
            ):
                self._fail_first(
                    AccessRefused(
                        f"RabbitMQ at {self.options.safe_url} refused the connection: "
                        f"{type(exc).__name__} (check user, password and virtual host)"
                    )
                )
                delay *= 10
            elif attempt == 0 or (attempt + 1) % 20 == 0:
                log.warning(
                    "cannot reach RabbitMQ at %s (%s); retrying, next in %.2f s",
                    self.options.safe_url,
                    type(exc).__name__,
                    delay,
                )
            await asyncio.sleep(delay)
            return None

    async def _until_lost(self, connection: aiormq.Connection) -> None:
        """Wait for the connection to close, then mark the link down."""
        try:
            await connection.closing
        except asyncio.CancelledError:
            if self.closed or ((task := asyncio.current_task()) and task.cancelling()):
                raise
        except Exception as exc:
            log.warning(
                "connection to RabbitMQ at %s lost: %s", self.options.safe_url, describe(exc)
            )
        self._up.clear()
        if not self.closed:
            linkevents.lost(self, "amqp", "connection", self.options.safe_url)
        for pipeline in (self._confirms, self._fire):
            if pipeline is not None:
                pipeline.stop()
        if self.connection is connection:
            self.connection = None

    async def _resume(self, generation: int) -> None:
        for key, resource in list(self.resources.items()):
            if generation != self.generation or self.closed:
                return
            try:
                await resource(generation)
            except Exception as exc:
                if broken(exc) or cancelled_by_link(exc):
                    return  # lost again: the next reconnect resumes everything
                log.error("could not resume %r after reconnecting: %s", key, describe(exc))

    # -- channels ----------------------------------------------------------------------------

    async def channel(
        self, *, confirms: bool = False, deadline: float | None = None
    ) -> aiormq.abc.AbstractChannel:
        connection = await self.ensure(deadline)
        try:
            return await connection.channel(publisher_confirms=confirms)
        except Exception as exc:
            raise self.translate(exc) from exc

    async def rpc(self, deadline: float | None = None) -> aiormq.abc.AbstractChannel:
        """A channel for declarations and queries; a new one after a channel error."""
        channel = self._rpc
        if channel is not None and not channel.is_closed and self.up:
            return channel
        async with self._opening.setdefault("rpc", asyncio.Lock()):
            channel = self._rpc
            if channel is None or channel.is_closed or not self.up:
                channel = self._rpc = await self.channel(deadline=deadline)
            return channel

    def discard(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Forget the RPC channel after an error closed it (a new one opens on next use)."""
        if self._rpc is channel:
            self._rpc = None

    def ready_confirms(self) -> Pipeline | None:
        """The confirm pipeline when it is open: the hot path, without an await."""
        pipeline = self._confirms
        return pipeline if pipeline is not None and pipeline.open and self.up else None

    def ready_fire(self) -> Pipeline | None:
        """The pipeline without confirms when it is open."""
        pipeline = self._fire
        return pipeline if pipeline is not None and pipeline.open and self.up else None

    async def confirms(self, deadline: float | None = None) -> Pipeline:
        """The connection's publisher-confirm pipeline (one confirm window per connection)."""
        pipeline = self._confirms
        if pipeline is not None and pipeline.open and self.up:
            return pipeline
        async with self._opening.setdefault("confirms", asyncio.Lock()):
            pipeline = self._confirms
            if pipeline is None or not pipeline.open or not self.up:
                channel = await self.channel(confirms=True, deadline=deadline)
                pipeline = self._confirms = Pipeline(
                    channel, self.options.confirm_window, self.generation
                )
            return pipeline

    async def fire(self, deadline: float | None = None) -> Pipeline:
        """A pipeline without confirms, for signals and replies (at most once)."""
        pipeline = self._fire
        if pipeline is not None and pipeline.open and self.up:
            return pipeline
        async with self._opening.setdefault("fire", asyncio.Lock()):
            pipeline = self._fire
            if pipeline is None or not pipeline.open or not self.up:
                channel = await self.channel(deadline=deadline)
                pipeline = self._fire = Pipeline(channel, 0, self.generation)
            return pipeline

    def translate(self, exc: BaseException) -> Exception:
        """A microhive error for an aiormq one (the URL in it is redacted)."""
        if isinstance(exc, TransportError | ConfigurationError):
            return exc
        if broken(exc) or cancelled_by_link(exc):
            return LinkDown(f"connection to {self.options.safe_url} lost ({describe(exc)})")
        if isinstance(exc, amqp_errors.ChannelAccessRefused):
            return AccessRefused(f"RabbitMQ refused: {describe(exc)}")
        return TransportError(f"RabbitMQ at {self.options.safe_url}: {describe(exc)}")


def describe(exc: BaseException) -> str:
    """An aiormq error for a message: its type and RabbitMQ's reply text."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

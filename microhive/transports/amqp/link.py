"""One AMQP connection per process, that reconnects by itself, and the pipelines on it.

Every bus and broker of a process that names the same server (same URL without microhive's
options) on the same event loop shares one :class:`Link`: one TCP connection, channels as
needed. aiormq speaks the protocol; this module adds

- a supervisor task that connects, and after a loss reconnects with capped exponential
  backoff, in a loop (never recursion), then lets every registered resource re-declare what
  it needs (queues, bindings, consumers);
- :class:`Pipeline`: frames written by many callers during one event-loop iteration leave
  in one write, and a publisher-confirm window (many publishes in flight on one channel,
  each caller waiting for its own confirm) instead of one round trip per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiormq
import aiormq.exceptions as amqp_errors
from aiormq.abc import ChannelFrame

from ...errors import ConfigurationError, TransportError
from ...retry import Backoff
from . import wire
from .options import AmqpOptions

log = logging.getLogger("microhive.amqp")

RECONNECT = Backoff(initial=0.05, factor=2.0, maximum=2.0, jitter=0.2)
"""Reconnect delays: 50 ms doubling to 2 s, so a restarted server is found again quickly."""


class _QuietReconnects(logging.Filter):
    """aiormq logs every failed connection attempt at ERROR; the link's own warnings say it
    once per outage (and every 20 attempts), so those records are dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error when creating transport")


logging.getLogger("aiormq.connection").addFilter(_QuietReconnects())

_LINKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Link]] = (
    weakref.WeakKeyDictionary()
)


class LinkDown(TransportError):
    """The connection to RabbitMQ is down; callers retry until ``retry_timeout``."""


class AccessRefused(TransportError):
    """RabbitMQ refused the credentials, the virtual host, or an operation."""


class QueueFull(TransportError):
    """RabbitMQ refused a message (``x-overflow: reject-publish`` on a full queue)."""


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
    """The process's link to ``options``' server, started and counted."""
    links = _LINKS.setdefault(asyncio.get_running_loop(), {})
    link = links.get(options.connection_url)
    if link is None or link.closed:
        link = links[options.connection_url] = Link(options)
    link.refs += 1
    try:
        await link.start()
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

    async def start(self) -> None:
        """Start the supervisor (once) and wait for the first connection.

        Raises :class:`AccessRefused` at once for bad credentials or virtual host, and
        :class:`LinkDown` when no connection could be made within ``retry_timeout``.
        """
        if self._task is None:
            self._first = self._loop.create_future()
            self._task = self._loop.create_task(self._supervise(), name=f"amqp-link {self!r}")
        if self.up:
            return
        assert self._first is not None
        try:
            async with asyncio.timeout(self.options.retry_timeout):
                await asyncio.shield(self._first)
        except TimeoutError:
            raise LinkDown(
                f"could not connect to {self.options.safe_url} "
                f"within {self.options.retry_timeout:g} s"
            ) from None

    async def close(self) -> None:
        for pipeline in (self._confirms, self._fire):  # what was sent goes out first
            if pipeline is not None and self.up:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pipeline.drain(), 5)
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pipeline in (self._confirms, self._fire):
            if pipeline is not None:
                pipeline.stop()
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
        try:
            connection = aiormq.Connection(
                self.options.connection_url,
                client_properties={"connection_name": "microhive"},
            )
        except Exception as exc:  # the URL itself: retrying cannot help
            self._fail_first(
                ConfigurationError(f"bad AMQP URL {self.options.safe_url}: {type(exc).__name__}")
            )
            self.closed = True
            return None
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await connection.connect()
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
                "connection to RabbitMQ at %s lost: %s", self.options.safe_url, _describe(exc)
            )
        self._up.clear()
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
                log.error("could not resume %r after reconnecting: %s", key, _describe(exc))

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

    async def confirms(self, deadline: float | None = None) -> Pipeline:
        """The connection's publisher-confirm pipeline (one confirm window per connection)."""
        pipeline = self._confirms
        if pipeline is not None and pipeline.open and self.up:
            return pipeline
        async with self._opening.setdefault("confirms", asyncio.Lock()):
            pipeline = self._confirms
            if pipeline is None or not pipeline.open or not self.up:
                channel = await self.channel(confirms=True, deadline=deadline)
                pipeline = self._confirms = Pipeline(channel, self.options.confirm_window)
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
                pipeline = self._fire = Pipeline(channel, 0)
            return pipeline

    def translate(self, exc: BaseException) -> Exception:
        """A microhive error for an aiormq one (the URL in it is redacted)."""
        if isinstance(exc, TransportError | ConfigurationError):
            return exc
        if broken(exc) or cancelled_by_link(exc):
            return LinkDown(f"connection to {self.options.safe_url} lost ({_describe(exc)})")
        if isinstance(exc, amqp_errors.ChannelAccessRefused):
            return AccessRefused(f"RabbitMQ refused: {_describe(exc)}")
        return TransportError(f"RabbitMQ at {self.options.safe_url}: {_describe(exc)}")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CHANNEL_PARTS = ("delivery_tag", "confirmations", "message_id_delivery_tag", "write_queue")


class Pipeline:
    """Frames of one channel, coalesced into few writes; with confirms, a confirm window.

    ``window`` > 0 turns on publisher confirms: :meth:`publish` returns a future that aiormq
    resolves with the broker's ack, fails with ``PublishError`` when a mandatory message is
    returned and ``DeliveryError`` when it is nacked, and fails when the channel closes.
    Callers wait in :meth:`room` while ``window`` publishes are unconfirmed.
    """

    def __init__(self, channel: aiormq.abc.AbstractChannel, window: int) -> None:
        self.channel: Any = channel  # aiormq.Channel: its confirm bookkeeping is used directly
        missing = [name for name in _CHANNEL_PARTS if not hasattr(channel, name)]
        if missing:
            raise TransportError(
                f"this aiormq version's channels lack {missing}: install aiormq>=7.2,<8"
            )
        self.number: int = channel.number
        self.window = window
        self.frame_max: int = channel.connection.connection_tune.frame_max or 131072
        self.in_flight = 0
        self._out: list[bytes] = []
        self._wake = asyncio.Event()
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._methods: dict[tuple[str, str, bool], bytes] = {}
        self._stopped = False
        self._busy = False
        self._drained: deque[asyncio.Future[None]] = deque()
        self._task = asyncio.get_running_loop().create_task(self._write())

    @property
    def open(self) -> bool:
        return not self._stopped and not self.channel.is_closed

    def stop(self) -> None:
        self._stopped = True
        self._task.cancel()
        self._out.clear()
        self._wake_drained()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def room(self) -> None:
        """Wait while the confirm window is full."""
        while self.window and self.in_flight >= self.window and self.open:
            waiter = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()

    @property
    def backlog(self) -> int:
        """Messages queued here and not yet handed to the connection's writer."""
        return len(self._out)

    def send(self, data: bytes) -> None:
        """Queue raw frames (acks, nacks); they go out with the next write."""
        if not self.open:
            raise LinkDown("channel closed")
        self._out.append(data)
        self._wake.set()

    def publish(
        self,
        exchange: str,
        routing_key: str,
        header: bytes,
        body: bytes,
        *,
        mandatory: bool = False,
        message_id: str | None = None,
    ) -> asyncio.Future[Any] | None:
        """Queue one message; with confirms, the future of its confirm."""
        if not self.open:
            raise LinkDown("channel closed")
        key = (exchange, routing_key, mandatory)
        method = self._methods.get(key)
        if method is None:
            if len(self._methods) > 4096:
                self._methods.clear()
            method = self._methods[key] = wire.publish_method(
                self.number, exchange, routing_key, mandatory
            )
        confirm: asyncio.Future[Any] | None = None
        if self.window:
            channel = self.channel
            tag = channel.delivery_tag = channel.delivery_tag + 1
            confirm = channel.create_future()
            channel.confirmations[tag] = confirm
            self.in_flight += 1
            if mandatory and message_id:
                returns = channel.message_id_delivery_tag
                returns[message_id] = tag

                def forget(_: object, message_id: str = message_id, tag: int = tag) -> None:
                    if returns.get(message_id) == tag:
                        del returns[message_id]
                    self._confirmed()

                confirm.add_done_callback(forget)
            else:
                confirm.add_done_callback(self._confirmed)
        self._out.append(method + wire.content_frames(self.number, header, body, self.frame_max))
        self._wake.set()
        return confirm

    def _confirmed(self, _: object = None) -> None:
        self.in_flight -= 1
        if self._waiting and self.in_flight < self.window:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until every queued frame was handed to the connection's writer (frames sent
        later on this connection, such as an RPC, go after them)."""
        while (self._out or self._busy) and self.open:
            waiter = asyncio.get_running_loop().create_future()
            self._drained.append(waiter)
            await waiter

    async def _write(self) -> None:
        write_queue = self.channel.write_queue
        out = self._out
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._busy = True
                try:
                    while out:
                        payload = b"".join(out)
                        out.clear()
                        await write_queue.put(ChannelFrame(payload=payload, should_close=False))
                finally:
                    self._busy = False
                    self._wake_drained()
        except asyncio.CancelledError:
            pass

    def _wake_drained(self) -> None:
        while self._drained:
            waiter = self._drained.popleft()
            if not waiter.done():
                waiter.set_result(None)

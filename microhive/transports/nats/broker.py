"""Durable queues on NATS JetStream.

- A queue is a stream of its own, ``<prefix>_queue_<name>`` (dots become underscores), with
  two subjects: ``<prefix>.queue.<name>`` for what producers send and
  ``<prefix>.retry.<name>`` for retries. One stream per queue keeps each queue's limits,
  storage and replicas its own, lets its consumer read without a subject filter, and makes
  its length and history exact (docs/transports/nats.md says more).
- Every consumer of a queue, in every process, pulls from one durable consumer
  (``durable`` URL option, default ``microhive``): they compete, as on every transport.
  A consumer asks for as many messages as it has free prefetch slots (pull requests that
  wait up to ``expires`` on the server, with idle heartbeats), acknowledges after the
  handler, and sends in-progress acks while a handler runs, so ``ack_wait`` only has to
  cover a crash: then the server delivers the message again.
- A delayed message carries the header ``Microhive-Due`` (Unix ms). Delivered early, it is
  not handed out but negatively acknowledged with the remaining delay; the due time is in
  the message, so a delay survives restarts of consumers and of the server. A retry is a
  new message (the envelope's ``attempt`` + 1) on the retry subject, published before the
  original is acknowledged.
- Dead letters go to the stream ``<prefix>_dead_<name>`` (subject ``<prefix>.dead.<name>``):
  the original bytes, with the reason, attempt and time in headers.
- The streams keep acknowledged messages for replay: every ``trim_interval`` consumers
  purge what every durable consumer acknowledged, except the newest ``history`` messages,
  at a moment when nothing is pending (see :meth:`NatsBroker._trim` for why).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ...broker import Consumer, DeadLetter, Delivery, QueueBroker
from ...capabilities import Capabilities
from ...envelope import Envelope, new_id
from ...errors import ConfigurationError, ConsumerClosed, DecodeError, TransportError
from ..handover import Handover
from .connection import (
    DESCRIPTION,
    RECONNECT,
    STATUS,
    ApiError,
    Connection,
    LinkError,
    Message,
    NoResponders,
)
from .options import NatsOptions, parse
from .options import consumer_name as instance_name

log = logging.getLogger("microhive.nats")

DUE = "Microhive-Due"
"""Header of a delayed message: when it may be handed out (Unix time in ms)."""
GROUP = "Microhive-Group"
"""Header of a retry: the durable consumer it is for (others skip it)."""
REASON = "Microhive-Reason"
ATTEMPT = "Microhive-Attempt"
QUEUE = "Microhive-Queue"
DEAD_AT = "Microhive-Dead-At"
MESSAGE_ID = "Microhive-Id"
PENDING_MESSAGES = "Nats-Pending-Messages"
MSG_ID = "Nats-Msg-Id"

_ACK = b"+ACK"
_NAK = b"-NAK"
_WPI = b"+WPI"
_NS = 1_000_000_000
STREAM_IN_USE = 10058  # "stream name already in use with a different configuration"
CONSUMER_NOT_FOUND = 10014
STREAM_NOT_FOUND = 10059
NO_MESSAGE = 10037


def _ns(seconds: float) -> int:
    return max(1, round(seconds * _NS))


def _header_text(text: str, limit: int = 2000) -> str:
    """Header values are one line of text."""
    return " ".join(text.split())[:limit]


class NatsDelivery(Delivery):
    __slots__ = ("consumer", "delivered", "reply", "sequence", "touched")

    def __init__(
        self,
        consumer: NatsConsumer,
        reply: str,
        sequence: int,
        delivered: int,
        raw: bytes,
        envelope: Envelope | None,
        error: str | None,
        touched: float,
    ) -> None:
        super().__init__(raw, envelope, error)
        self.consumer = consumer
        self.reply = reply
        self.sequence = sequence
        self.delivered = delivered
        self.touched = touched

    @property
    def message_id(self) -> str:
        """The stream sequence number of the message."""
        return str(self.sequence)

    async def ack(self) -> None:
        """``+ACK``; like an AMQP ack it does not wait for the server. An ack that is lost
        (the connection dropped) means a delivery again after ``ack_wait``."""
        if self._settle():
            consumer = self.consumer
            consumer._settled(self)
            consumer.broker._ack(self.reply, self)

    async def retry(self, delay: float, reason: str) -> None:
        if not self._settle():
            return
        assert self.envelope is not None, "an undecodable message cannot be retried"
        consumer = self.consumer
        consumer._settled(self)
        broker = consumer.broker
        data = broker.codec.encode(self.envelope.next_attempt(**{"x-last-error": reason}))
        headers = {GROUP: consumer.durable}
        if delay > 0:
            headers[DUE] = str(round((time.time() + delay) * 1000))
        if broker.options.dedup:
            headers[MSG_ID] = f"{self.envelope.id}:{self.envelope.attempt + 1}"
        subject = broker.options.retry_subject(consumer.queue)
        if await broker._settle_by_storing(self, "retry", consumer.queue, subject, data, headers):
            broker._ack(self.reply, self)

    async def dead_letter(self, reason: str) -> None:
        if not self._settle():
            return
        consumer = self.consumer
        consumer._settled(self)
        broker = consumer.broker
        envelope = self.envelope
        headers = {
            REASON: _header_text(reason) or "-",
            ATTEMPT: str(envelope.attempt if envelope is not None else 1),
            QUEUE: consumer.queue,
            DEAD_AT: repr(time.time()),
            "Microhive-Sequence": str(self.sequence),
            "Microhive-Deliveries": str(self.delivered),
        }
        if envelope is not None:
            headers[MESSAGE_ID] = envelope.id
        subject = broker.options.dead_subject(consumer.queue)
        if await broker._settle_by_storing(
            self, "dead-letter", consumer.queue, subject, self.raw, headers, dead=True
        ):
            broker._ack(self.reply, self)

    async def release(self) -> None:
        """``-NAK``: the server delivers it again at once, before newer messages."""
        if self._settle():
            self.consumer._settled(self)
            await self.consumer.broker._signal_server(self.reply, _NAK, "release", self)


class NatsConsumer(Consumer):
    """Pulls one queue's durable consumer for one consuming agent instance."""

    def __init__(self, broker: NatsBroker, queue: str, name: str, prefetch: int) -> None:
        self.broker = broker
        self.options = broker.options
        self.queue = queue
        self.name = name
        self.prefetch = prefetch
        self.durable = self.options.durable
        self.stream = self.options.stream(queue)
        self.inbox = f"_INBOX.{new_id()}"
        self.closed = False
        self.held: dict[int, NatsDelivery] = {}  # stream sequence -> delivered, not settled
        self.handover: Handover[NatsDelivery] = Handover()  # held, not yet taken by a worker
        self.requested = 0  # messages asked for by pull requests still open
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        self._heartbeat = max(0.1, min(5.0, self.options.expires / 4))
        self._pull = orjson.dumps(
            {"expires": _ns(self.options.expires), "idle_heartbeat": _ns(self._heartbeat)}
        )[:-1]
        self._room = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._seen = self._loop.time()  # last message or heartbeat
        self._subscription: Any = None
        self._fetcher: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._redeclaring: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<NatsConsumer {self.name} of {self.queue!r} on {self.options.safe_url}>"

    async def start(self) -> None:
        self._subscription = await self.broker._require().subscribe(self.inbox, self._on_message)
        self._fetcher = self._loop.create_task(self._fetch(), name=f"microhive.nats.{self.name}")
        self._keeper = self._loop.create_task(self._keep(), name=f"microhive.nats.{self.name}.k")

    # -- handing out -------------------------------------------------------------------

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue)
        return await self.handover.take()

    def _settled(self, delivery: NatsDelivery) -> None:
        if self.held.pop(delivery.sequence, None) is not None and not self._room.is_set():
            self._room.set()

    # -- receiving ---------------------------------------------------------------------

    async def _on_message(
        self, subject: bytes, raw_reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        """Everything the server sends to our inbox: messages and status notes."""
        self._seen = self._loop.time()
        if not raw_reply:
            self._on_status(headers or {})
            return
        reply = raw_reply.decode()
        if self.requested > 0:
            self.requested -= 1
        broker = self.broker
        if self.closed:  # arrived after close: give it back at once
            await broker._signal_server(reply, _NAK, "release", None)
            return
        metadata = ack_metadata(reply)
        if metadata is None:
            log.error("%r: unexpected reply subject %r; message ignored", self, reply)
            return
        delivered, sequence, _ = metadata
        known = self.held.get(sequence)
        if known is not None:  # delivered again while we hold it (ack_wait passed)
            known.reply = reply
            known.delivered = delivered
            known.touched = 0.0  # in progress: say so at the next chance
            return
        early = False
        if headers:
            if await self._not_for_now(reply, headers):
                return
            early = DUE in headers
        try:
            envelope: Envelope | None = broker.codec.decode(data)
            error = None
        except DecodeError as exc:
            envelope, error = None, str(exc)
        delivery = NatsDelivery(
            self, reply, sequence, delivered, data, envelope, error, self._loop.time()
        )
        self.held[sequence] = delivery
        limit = self.options.max_deliver
        if limit and delivered > limit + early:  # a delayed one was delivered early once
            self._crash_looped(delivery, limit)
        else:
            self.handover.give(delivery)

    async def _not_for_now(self, reply: str, headers: dict[str, str]) -> bool:
        """Skip another durable's retry; send a message delivered before it is due back
        with the remaining delay. True when the message is not handed out."""
        group = headers.get(GROUP)
        if group is not None and group != self.durable:
            self.broker._ack(reply, None)
            return True
        due = headers.get(DUE)
        if due is None:
            return False
        try:
            wait = int(due) / 1000 - time.time()
        except (ValueError, OverflowError):  # a foreign producer's header: not a delay
            wait = 0.0
        if wait <= 0.001:
            return False
        body = _NAK + b' {"delay": %d}' % _ns(wait)
        await self.broker._signal_server(reply, body, "delay", None)
        if not self._room.is_set():
            self._room.set()
        return True

    def _crash_looped(self, delivery: NatsDelivery, limit: int) -> None:
        log.error(
            "%r: message %d was delivered %d times without being settled (max_deliver=%d); "
            "dead-lettered",
            self,
            delivery.sequence,
            delivery.delivered,
            limit,
        )
        self.broker._spawn(
            delivery.dead_letter(
                f"delivered {delivery.delivered} times without being settled "
                f"(max_deliver={limit}): did its handler crash or stop the consumer?"
            )
        )

    def _on_status(self, headers: dict[str, str]) -> None:
        status = headers.get(STATUS, "")
        if status == "100":  # idle heartbeat
            return
        pending = headers.get(PENDING_MESSAGES)
        if pending is not None and pending.isdigit():
            self.requested = max(0, self.requested - int(pending))
        else:
            self.requested = 0
        if status in ("404", "408"):
            pass  # a request ended (expired): ask again
        elif status == "503" or "Consumer Deleted" in headers.get(DESCRIPTION, ""):
            self.requested = 0
            self._redeclare(f"{status} {headers.get(DESCRIPTION, 'no responders')}")
        elif status == "409":
            log.debug("%r: %s %s", self, status, headers.get(DESCRIPTION, ""))
        else:
            log.warning("%r: status %s %s", self, status, headers.get(DESCRIPTION, ""))
        if not self._room.is_set():
            self._room.set()

    def _redeclare(self, why: str) -> None:
        if self._redeclaring is not None and not self._redeclaring.done():
            return

        async def again() -> None:
            log.warning("%r: the consumer is gone (%s); declaring it again", self, why)
            try:
                await self.broker._declare(self.queue, force=True)
            except TransportError as exc:
                log.error("%r: %s", self, exc)
                await asyncio.sleep(1)
            self._room.set()

        self._redeclaring = self._loop.create_task(again())

    def _reconnected(self) -> None:
        """Pull requests do not outlive a connection: ask again."""
        self.requested = 0
        self._room.set()

    async def _fetch(self) -> None:
        """Ask for as many messages as there are free slots; survive any outage."""
        connection = self.broker._require()
        prefetch = self.prefetch
        half = max(1, prefetch // 2)
        stall = 2 * self._heartbeat + 1.0
        failures = 0
        while not self.closed:
            free = prefetch - len(self.held) - self.requested
            if free <= 0 or (self.handover and free < half) or (self.requested and free < half):
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._heartbeat):
                        await self._room.wait()
                if self.requested and self._loop.time() - self._seen > stall:
                    log.debug("%r: no heartbeat for %.1f s; asking again", self, stall)
                    self.requested = 0
                continue
            try:
                if not connection.up:
                    await connection.wait_up()
                    continue
                if self._redeclaring is not None and not self._redeclaring.done():
                    await self._redeclaring
                    continue
                self.requested += free
                self._seen = self._loop.time()
                await connection.client.publish(
                    self._next_subject, self._pull + b',"batch":%d}' % free, reply=self.inbox
                )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end the loop
                self.requested = 0
                failures += 1
                if connection.closed:
                    return
                if failures == 1:
                    text = connection.options.scrub(str(exc))
                    log.warning("%r: pull request failed: %s", self, text)
                await asyncio.sleep(RECONNECT.delay(failures))

    # -- keeping what is held: in-progress acks ------------------------------------------

    async def _keep(self) -> None:
        """Tell the server that held messages are in progress, so ack_wait never passes
        while a handler runs (or a delivery waits for a free worker)."""
        every = max(0.05, self.options.ack_wait / 3)
        broker = self.broker
        try:
            while not (self.closed and not self.held):
                await asyncio.sleep(every / 2)
                now = self._loop.time()
                stale = [d for d in self.held.values() if now - d.touched >= every]
                for delivery in stale:
                    delivery.touched = now
                    await broker._signal_server(delivery.reply, _WPI, "in-progress ack", None)
        finally:
            if self.closed:
                broker._consumers.discard(self)

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop pulling; give back what was received but not handed out. Handed-out
        deliveries stay valid (and kept from redelivery) until they are settled."""
        if self.closed:
            return
        self.closed = True
        self.broker._forget(self)
        self.handover.fail(ConsumerClosed(self.queue))
        await _cancel(self._fetcher, self._redeclaring)
        await self._stop_intake()
        unstarted = [d for d in self.handover.clear() if not d.settled]
        for delivery in unstarted:
            await delivery.release()

    async def _stop_intake(self) -> None:
        """Unsubscribe on the server first and wait for its answer (PING/PONG): whatever the
        server sent before is received (and given back), nothing comes after."""
        subscription, self._subscription = self._subscription, None
        connection = self.broker._connection
        if subscription is not None and connection is not None:
            await connection.unsubscribe(subscription, drain=True)

    async def abort(self) -> None:
        """The broker is closing: stop everything, settle nothing (as a crash would)."""
        self.closed = True
        self.handover.fail(ConsumerClosed(self.queue))
        await _cancel(self._fetcher, self._keeper, self._redeclaring)
        self.held.clear()
        self.handover.clear()
        subscription, self._subscription = self._subscription, None
        connection = self.broker._connection
        if subscription is not None and connection is not None:
            await connection.unsubscribe(subscription)


async def _cancel(*tasks: asyncio.Task[Any] | None) -> None:
    running = [task for task in tasks if task is not None and not task.done()]
    for task in running:
        task.cancel()
    if running:
        await asyncio.gather(*running, return_exceptions=True)


class Trimmer:
    """Purges what every durable consumer of a queue acknowledged, beyond ``history``."""

    def __init__(self, broker: NatsBroker, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.users = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.broker.options.trim_interval > 0:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"microhive.nats.trim.{self.queue}"
            )

    async def stop(self) -> None:
        await _cancel(self.task)

    async def _run(self) -> None:
        interval = self.broker.options.trim_interval
        failures = 0
        while True:
            await asyncio.sleep(interval if not failures else RECONNECT.delay(failures) + interval)
            try:
                await self.broker._trim(self.queue)
                failures = 0
            except TransportError as exc:
                failures += 1
                if failures == 1:
                    log.warning("trimming %r: %s", self.queue, exc)
            except Exception:  # never end the loop
                failures += 1
                log.exception("trimming %r failed", self.queue)


class NatsBroker(QueueBroker):
    """``nats://[user:password@]host[:port][,host:port...][?prefix=...&ack_wait=...]``;
    ``tls://`` for TLS. The options are described in docs/transports/nats.md."""

    capabilities = Capabilities(
        out_of_process=True, durable=True, delayed_delivery=True, dead_letter=True, replay=True
    )

    def __init__(self, url: str = "nats://", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: NatsOptions = parse(url)
        self._connection: Connection | None = None
        self._declared: dict[str, asyncio.Future[None]] = {}
        self._dead_declared: dict[str, asyncio.Future[None]] = {}
        self._consumers: set[NatsConsumer] = set()
        self._trimmers: dict[str, Trimmer] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._subjects: dict[str, str] = {}
        self._acks: list[str] = []
        self._acking = False
        self._followers: set[Follower] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        connection = Connection(self.options, "broker")
        await connection.open()
        connection.watch(up=self._reconnected)
        self._connection = connection

    async def _close(self) -> None:
        for follower in self._followers:  # ends the tail() loops of this broker
            follower.closing = True
            follower.incoming.put_nowait(None)
        consumers = list(self._consumers)
        self._consumers.clear()
        for consumer in consumers:
            await consumer.abort()
        for trimmer in self._trimmers.values():
            await trimmer.stop()
        self._trimmers.clear()
        if self._background:  # settlements on their way: let them land
            await asyncio.wait(set(self._background), timeout=self.options.request_timeout)
        connection, self._connection = self._connection, None
        self._declared.clear()
        self._dead_declared.clear()
        if connection is not None:
            await connection.close()

    def _reconnected(self) -> None:
        for consumer in self._consumers:
            consumer._reconnected()

    def _require(self) -> Connection:
        connection = self._connection
        if connection is None:
            raise TransportError(f"{self!r} is not connected")
        return connection

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- JetStream API through outages -------------------------------------------------

    async def _api(self, subject: str, body: Any = None) -> dict[str, Any]:
        """One JetStream API request, retried through outages until ``retry_timeout``."""
        connection = self._require()
        data = b"" if body is None else orjson.dumps(body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await connection.wait_up(deadline)
                return await connection.request(f"$JS.API.{subject}", data)
            except NoResponders:
                # JetStream not (yet) there: a restarting server, or not enabled
                failures += 1
                if loop.time() >= deadline:
                    raise TransportError(
                        f"{self!r}: JetStream does not answer (is it enabled: nats-server -js?)"
                    ) from None
            except LinkError:
                failures += 1
                if connection.closed or loop.time() >= deadline:
                    raise
            await asyncio.sleep(min(RECONNECT.delay(failures), max(0.0, deadline - loop.time())))

    async def _declare(self, queue: str, *, force: bool = False) -> None:
        """Create the queue's stream and durable consumer (once per broker; ``force``: again)."""
        declared = self._declared.get(queue)
        if declared is not None:
            if not declared.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(declared)
                if not force and _ok(declared):
                    return
            elif not force and _ok(declared):
                return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._declared[queue] = future
        try:
            await self._create_stream(
                self.options.stream(queue),
                [self.options.queue_subject(queue), self.options.retry_subject(queue)],
                f"microhive queue {queue}",
            )
            await self._create_consumer(queue)
        except BaseException as exc:
            if self._declared.get(queue) is future:
                del self._declared[queue]
            future.set_exception(exc)
            future.exception()  # retrieved: the next call tries again
            raise
        future.set_result(None)

    async def _declare_dead(self, queue: str) -> None:
        declared = self._dead_declared.get(queue)
        if declared is not None and _ok(declared):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dead_declared[queue] = future
        try:
            await self._create_stream(
                self.options.dead_stream(queue),
                [self.options.dead_subject(queue)],
                f"microhive dead letters of queue {queue}",
                dedup=False,
            )
        except BaseException as exc:
            if self._dead_declared.get(queue) is future:
                del self._dead_declared[queue]
            future.set_exception(exc)
            future.exception()
            raise
        future.set_result(None)

    async def _create_stream(
        self, name: str, subjects: list[str], description: str, *, dedup: bool | None = None
    ) -> None:
        options = self.options
        config: dict[str, Any] = {
            "name": name,
            "subjects": subjects,
            "description": description,
            "retention": "limits",
            "discard": "old",
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msgs_per_subject": -1,
            "max_msg_size": -1,
            "storage": options.storage,
            "num_replicas": options.replicas,
        }
        if options.dedup if dedup is None else dedup:
            config["duplicate_window"] = _ns(options.duplicate_window)
        try:
            await self._api(f"STREAM.CREATE.{name}", config)
        except ApiError as exc:
            if exc.err_code != STREAM_IN_USE:
                raise TransportError(f"{self!r}: cannot create stream {name!r}: {exc}") from None
            # it exists with other settings (limits set by an operator are fine)
            info = await self._api(f"STREAM.INFO.{name}")
            theirs = set(info.get("config", {}).get("subjects") or [])
            if not set(subjects) <= theirs:
                raise ConfigurationError(
                    f"stream {name!r} exists with subjects {sorted(theirs)}, not {subjects}: "
                    "another queue or program uses the name (queue names that differ only "
                    "in '.' and '_' share a stream name; use another name or prefix)"
                ) from None

    async def _create_consumer(self, queue: str) -> None:
        options = self.options
        stream = options.stream(queue)
        config = {
            "durable_name": options.durable,
            "description": f"microhive consumers of queue {queue}",
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": _ns(options.ack_wait),
            "max_deliver": -1,
            "max_ack_pending": -1,
            "max_waiting": 512,
            "replay_policy": "instant",
            "num_replicas": 0,
        }
        body = {"stream_name": stream, "config": config}
        try:
            await self._api(f"CONSUMER.DURABLE.CREATE.{stream}.{options.durable}", body)
        except ApiError as exc:
            raise TransportError(
                f"{self!r}: cannot create the durable consumer of queue {queue!r}: {exc}"
            ) from None

    # -- storing messages ----------------------------------------------------------------

    async def _store(
        self, queue: str, subject: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        """Publish to JetStream and wait for its acknowledgement, through outages (until
        ``retry_timeout``). A copy that may have been stored is not sent again until the
        connection it went out on is known to have failed (at least once, not twice at once).
        """
        connection = self._require()
        client = connection.client
        if client is not None and connection.up:  # the fast path
            try:
                answer = await connection.request_raw(subject, data, headers)
            except LinkError:
                pass
            else:
                if not answer.headers and answer.data[:9] != b'{"error":':
                    return
                if self._stored(answer, subject):
                    return
        await self._store_slowly(queue, subject, data, headers)

    def _stored(self, answer: Any, subject: str) -> bool:
        """True when ``answer`` acknowledges a publish; False when there was no stream."""
        status = answer.headers.get(STATUS) if answer.headers else None
        if status == "503":
            return False
        try:
            document = orjson.loads(answer.data)
        except orjson.JSONDecodeError:
            raise TransportError(f"unexpected answer to a publish on {subject!r}") from None
        error = document.get("error")
        if error is not None:
            raise TransportError(
                f"{self!r}: JetStream refused a message on {subject!r}: "
                f"{error.get('description', error)}"
            )
        return True

    async def _store_slowly(
        self, queue: str, subject: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        connection = self._require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await connection.wait_up(deadline)
                answer = await connection.request_raw(
                    subject,
                    data,
                    headers,
                    timeout=min(self.options.request_timeout, max(0.05, deadline - loop.time())),
                )
                if self._stored(answer, subject):
                    return
                # no stream (deleted, or a server that lost its state): declare it again
                if subject.startswith(f"{self.options.prefix}.dead."):
                    self._dead_declared.pop(queue, None)
                    await self._declare_dead(queue)
                else:
                    await self._declare(queue, force=True)
                continue
            except LinkError as exc:
                failures += 1
                if connection.closed or loop.time() >= deadline:
                    raise TransportError(
                        f"{self!r}: no acknowledgement for a message on {subject!r} within "
                        f"{self.options.retry_timeout:g} s: {exc}"
                    ) from None
            await asyncio.sleep(min(RECONNECT.delay(failures), max(0.0, deadline - loop.time())))

    async def _settle_by_storing(
        self,
        delivery: NatsDelivery,
        what: str,
        queue: str,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        *,
        dead: bool = False,
    ) -> bool:
        """Store the retry or dead letter; on failure the original is delivered again
        (never lost, never raised into the worker)."""
        try:
            if dead:
                await self._declare_dead(queue)
            await self._store(queue, subject, data, headers)
            return True
        except TransportError as exc:
            log.error(
                "%s of message %d on %r failed: %s; it will be delivered again",
                what,
                delivery.sequence,
                queue,
                exc,
            )
            return False

    # -- acknowledgements, confirmed once per event-loop iteration -------------------------

    def _ack(self, reply: str, delivery: NatsDelivery | None) -> None:
        """``+ACK``, sent with the other acks of this event-loop iteration. The last one
        of each batch asks the server to confirm: once it has, the server has processed
        every ack before it too, and a length query anywhere in this process counts them."""
        if self._connection is None or self._connection.client is None:
            if delivery is not None:
                log.warning(
                    "%r is closed: message %d not acknowledged; it will be delivered again",
                    self,
                    delivery.sequence,
                )
            return
        self._acks.append(reply)
        if not self._acking:
            self._acking = True
            self._spawn(self._send_acks())

    async def _send_acks(self) -> None:
        self._acking = False
        replies, self._acks = self._acks, []
        connection = self._connection
        client = connection.client if connection is not None else None
        if not replies or connection is None or client is None:
            return
        confirm, future = connection.expect()
        try:
            for reply in replies[:-1]:
                await client.publish(reply, _ACK)
            await client.publish(replies[-1], _ACK, reply=confirm)
        except Exception as exc:
            connection.forget(confirm)
            log.error(
                "acknowledging %d message(s) failed: %s; they will be delivered again",
                len(replies),
                self.options.scrub(str(exc) or type(exc).__name__),
            )
            return
        unconfirmed = _unconfirmed()
        unconfirmed.add(future)
        try:
            async with asyncio.timeout(self.options.request_timeout):
                await future
        except Exception:  # lost with the connection: the server delivers them again
            connection.forget(confirm)
        finally:
            unconfirmed.discard(future)

    async def _acknowledged(self) -> None:
        """Wait until the acks sent so far by every broker of this process are confirmed."""
        await asyncio.sleep(0)  # let acks of this iteration go out
        waiting = set(_unconfirmed())
        if waiting:
            await asyncio.wait(waiting, timeout=self.options.request_timeout)

    async def _signal_server(
        self, reply: str, body: bytes, what: str, delivery: NatsDelivery | None
    ) -> None:
        """Ack, nak or in-progress: fire and forget (buffered while reconnecting)."""
        connection = self._connection
        client = connection.client if connection is not None else None
        if client is None:
            if delivery is not None:
                log.warning(
                    "%r is closed: %s of message %d not sent; it will be delivered again",
                    self,
                    what,
                    delivery.sequence,
                )
            return
        try:
            await client.publish(reply, body)
        except Exception as exc:
            if delivery is not None:
                log.error(
                    "%s of message %d failed: %s; it will be delivered again",
                    what,
                    delivery.sequence,
                    self.options.scrub(str(exc) or type(exc).__name__),
                )

    # -- the transport primitives ------------------------------------------------------

    def _subject(self, queue: str) -> str:
        subject = self._subjects.get(queue)
        if subject is None:
            subject = self._subjects[queue] = self.options.queue_subject(queue)
        return subject

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        declared = self._declared.get(queue)
        if declared is None or not _ok(declared):
            await self._declare(queue)
        headers: dict[str, str] | None = None
        if delay > 0:
            headers = {DUE: str(round((time.time() + delay) * 1000))}
        if self.options.dedup:
            headers = headers or {}
            headers[MSG_ID] = f"{envelope.id}:{envelope.attempt}"
        await self._store(queue, self._subject(queue), data, headers)

    async def publish_raw(
        self, queue: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Store bytes as they are, as a foreign producer would (tests of bad input)."""
        await self.connect()
        await self._declare(queue)
        await self._store(queue, self._subject(queue), data, headers)

    async def _length(self, queue: str) -> int:
        await self._declare(queue)
        await self._acknowledged()
        stream = self.options.stream(queue)
        try:
            info = await self._api(f"CONSUMER.INFO.{stream}.{self.options.durable}")
        except ApiError as exc:
            if exc.err_code not in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
                raise TransportError(f"{self!r}: length of {queue!r}: {exc}") from None
            await self._declare(queue, force=True)
            info = await self._api(f"CONSUMER.INFO.{stream}.{self.options.durable}")
        return int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        stream = self.options.dead_stream(queue)
        letters: list[DeadLetter] = []
        sequence = 1
        while len(letters) < limit:
            try:
                answer = await self._api(
                    f"STREAM.MSG.GET.{stream}",
                    {"seq": sequence, "next_by_subj": self.options.dead_subject(queue)},
                )
            except ApiError as exc:
                if exc.err_code in (NO_MESSAGE, STREAM_NOT_FOUND) or exc.code == 404:
                    break
                raise TransportError(f"{self!r}: dead letters of {queue!r}: {exc}") from None
            message = answer.get("message") or {}
            sequence = int(message.get("seq", sequence)) + 1
            letters.append(self._dead_letter(queue, message))
        return letters

    def _dead_letter(self, queue: str, message: dict[str, Any]) -> DeadLetter:
        import base64

        raw = base64.b64decode(message.get("data") or b"")
        headers = parse_headers(base64.b64decode(message.get("hdrs") or b""))
        try:
            envelope: Envelope | None = self.codec.decode(raw)
        except DecodeError:
            envelope = None
        return DeadLetter(
            queue=queue,
            reason=headers.get(REASON, ""),
            raw=raw,
            envelope=envelope,
            attempt=_int(headers.get(ATTEMPT), 1),
            dead_at=_float(headers.get(DEAD_AT), 0.0),
        )

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        await self._declare(queue)
        consumer = NatsConsumer(
            self, queue, instance_name(name, f"consumer.{new_id()[:8]}"), prefetch
        )
        await consumer.start()
        self._consumers.add(consumer)
        trimmer = self._trimmers.get(queue)
        if trimmer is None:
            trimmer = self._trimmers[queue] = Trimmer(self, queue)
            trimmer.start()
        trimmer.users += 1
        return consumer

    def _forget(self, consumer: NatsConsumer) -> None:
        """A consumer closed: it stays known (its keeper runs while it holds deliveries)."""
        trimmer = self._trimmers.get(consumer.queue)
        if trimmer is not None:
            trimmer.users -= 1
            if trimmer.users <= 0:
                del self._trimmers[consumer.queue]
                self._spawn(trimmer.stop())

    async def _trim(self, queue: str) -> None:
        """Purge what is acknowledged, keeping the newest ``history`` messages: only while
        every durable consumer of the queue has nothing pending and nothing unacknowledged.

        A purge makes nats-server (2.9) forget *every* unacknowledged delivery of the
        stream's consumers, not only those below the purged sequence, so it must not run
        while a message is held: a consumer that died holding one would never get it back.
        """
        stream = self.options.stream(queue)
        listing = await self._api(f"CONSUMER.LIST.{stream}", {"offset": 0})
        durables = [
            item
            for item in listing.get("consumers") or []
            if (item.get("config") or {}).get("durable_name")
            and (item.get("config") or {}).get("ack_policy") != "none"
        ]
        if not durables or any(
            int(item.get("num_pending", 0)) or int(item.get("num_ack_pending", 0))
            for item in durables
        ):
            return
        state = (await self._api(f"STREAM.INFO.{stream}")).get("state") or {}
        first, last = int(state.get("first_seq", 0)), int(state.get("last_seq", 0))
        upto = last - self.options.history + 1
        if upto > first:
            await self._api(f"STREAM.PURGE.{stream}", {"seq": upto})

    # -- replay ----------------------------------------------------------------------------

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages sent to the queue, then every new one: an ordered,
        ephemeral consumer of the queue subject only (retries are not new messages), with
        no acks; it starts again after the last sequence it saw if it loses its place."""
        await self._declare(queue)
        reader = Follower(self, queue)
        self._followers.add(reader)
        try:
            async for data in reader.follow(last):
                yield data
        finally:
            self._followers.discard(reader)
            await reader.stop()


class Follower:
    """An ordered consumer: an ephemeral pull consumer (no acks) read in sequence, made again
    from the next sequence whenever a gap, a missing heartbeat or a reconnect shows that
    it lost its place."""

    BATCH = 256

    def __init__(self, broker: NatsBroker, queue: str) -> None:
        self.broker = broker
        self.options = broker.options
        self.queue = queue
        self.stream = self.options.stream(queue)
        self.subject = self.options.queue_subject(queue)
        self.inbox = f"_INBOX.{new_id()}"
        self.name: str | None = None
        self.incoming: asyncio.Queue[Message | None] = asyncio.Queue()
        self.subscription: Any = None
        self.heartbeat = max(0.1, min(5.0, self.options.expires / 4))
        self.start = 1  # the stream sequence to make the consumer at
        self.expected = 1  # the consumer sequence of the next message
        self.requested = 0
        self.closing = False  # the broker is closing: the tail ends

    async def follow(self, last: int) -> AsyncIterator[bytes]:
        broker = self.broker
        connection = broker._require()
        self.subscription = await connection.subscribe(self.inbox, self._receive)
        connection.watch(up=self._reconnected)
        self.start, skip = await self._start(last)
        failures = 0
        while not self.closing and broker._connection is connection:  # else: the broker closed
            if self.name is None:
                try:
                    await self._create(self.start)
                except TransportError as exc:
                    failures += 1
                    log.warning("tail of %r: %s; trying again", self.queue, exc)
                    await asyncio.sleep(RECONNECT.delay(failures))
                    continue
                failures = 0
                self.expected, self.requested = 1, 0
            if self.requested <= self.BATCH // 2:
                await self._ask(connection)
            data = await self._next()
            if data is None:
                continue
            if skip > 0:
                skip -= 1
                continue
            yield data

    async def _ask(self, connection: Connection) -> None:
        body = {
            "batch": self.BATCH,
            "expires": _ns(self.options.expires),
            "idle_heartbeat": _ns(self.heartbeat),
        }
        with contextlib.suppress(Exception):
            await connection.require().publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}",
                orjson.dumps(body),
                reply=self.inbox,
            )
            self.requested += self.BATCH

    async def _next(self) -> bytes | None:
        """The next message in order; None after a status note, or when the consumer lost
        its place (it is dropped, and made again from after the last message seen)."""
        try:
            async with asyncio.timeout(2 * self.heartbeat + 1):
                item = await self.incoming.get()
        except TimeoutError:
            log.debug("tail of %r: no heartbeat; starting again at %d", self.queue, self.start)
            await self._drop()
            return None
        if item is None:  # reconnected: the consumer may be gone with a restarted server
            await self._drop()
            return None
        if not item.reply:
            headers = item.headers or {}
            status = headers.get(STATUS, "")
            pending = headers.get(PENDING_MESSAGES)
            if status in ("404", "408") and pending is not None and pending.isdigit():
                self.requested = max(0, self.requested - int(pending))
            elif status != "100":
                await self._drop()  # 409 consumer deleted, 503 no responders...
            return None
        self.requested = max(0, self.requested - 1)
        metadata = ack_metadata(item.reply.decode())
        if metadata is None:
            return None
        _, sequence, consumer_sequence = metadata
        if consumer_sequence != self.expected:
            await self._drop()  # a gap: make the consumer again after what we have
            return None
        self.expected += 1
        self.start = sequence + 1
        return item.data

    async def _start(self, last: int) -> tuple[int, int]:
        """The first stream sequence to read, and how many of the queue's messages from
        there to skip, so that ``last`` of them remain."""
        info = await self.broker._api(f"STREAM.INFO.{self.stream}")
        state = info.get("state") or {}
        first, newest = int(state.get("first_seq", 1)) or 1, int(state.get("last_seq", 0))
        if last == 0 or newest == 0:
            return newest + 1, 0
        start = max(first, newest - last + 1)
        while True:
            count = await self._count(start)
            if count >= last or start <= first:
                return start, max(0, count - last)
            start = max(first, start - 2 * (last - count))  # retries in between: look further

    async def _count(self, start: int) -> int:
        """How many messages of the queue subject the stream holds from ``start`` on."""
        answer = await self._create(start, count_only=True)
        return int(answer.get("num_pending", 0))

    async def _create(self, start: int, *, count_only: bool = False) -> dict[str, Any]:
        config = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": max(1, start),
            "ack_policy": "none",
            "filter_subject": self.subject,
            "replay_policy": "instant",
            "inactive_threshold": _ns(max(5.0, 4 * self.options.expires)),
            "num_replicas": 1,
            "mem_storage": True,
            "max_deliver": 1,
        }
        try:
            answer = await self.broker._api(
                f"CONSUMER.CREATE.{self.stream}", {"stream_name": self.stream, "config": config}
            )
        except ApiError as exc:
            raise TransportError(f"tail of {self.queue!r}: {exc}") from None
        name = str(answer.get("name", ""))
        if count_only:
            await self._delete(name)
        else:
            self.name = name
        return answer

    async def _delete(self, name: str | None) -> None:
        if not name:
            return
        with contextlib.suppress(TransportError):
            connection = self.broker._require()
            if connection.up:
                await connection.request(
                    f"$JS.API.CONSUMER.DELETE.{self.stream}.{name}",
                    timeout=self.options.request_timeout,
                )

    async def _drop(self) -> None:
        name, self.name = self.name, None
        await self._delete(name)
        while not self.incoming.empty():  # what the old consumer sent is read again
            self.incoming.get_nowait()

    def _receive(
        self, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        self.incoming.put_nowait(Message(reply, data, headers))

    def _reconnected(self) -> None:
        self.incoming.put_nowait(None)

    async def stop(self) -> None:
        connection = self.broker._connection
        if connection is not None:
            connection.unwatch(self._reconnected)
        subscription, self.subscription = self.subscription, None
        if subscription is not None and connection is not None:
            await connection.unsubscribe(subscription)
        await self._delete(self.name)
        self.name = None


_UNCONFIRMED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _unconfirmed() -> set[asyncio.Future[Any]]:
    """Ack confirmations awaited by the brokers of the running event loop (this process)."""
    return _UNCONFIRMED.setdefault(asyncio.get_running_loop(), set())


def ack_metadata(reply: str) -> tuple[int, int, int] | None:
    """(times delivered, stream sequence, consumer sequence) from a JetStream reply subject:
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>``, or the newer
    form with ``<domain>.<account hash>`` after ``$JS.ACK`` (and a random token at the end).
    """
    parts = reply.split(".")
    offset = 0 if len(parts) == 9 else 2
    try:
        return int(parts[4 + offset]), int(parts[5 + offset]), int(parts[6 + offset])
    except (IndexError, ValueError):
        return None


def _ok(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def parse_headers(block: bytes) -> dict[str, str]:
    """A NATS header block (``NATS/1.0\\r\\nKey: value\\r\\n...``) as a dict."""
    headers: dict[str, str] = {}
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name:
            headers.setdefault(name.strip(), value.strip())
    return headers


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _float(value: str | None, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except ValueError:
        return default

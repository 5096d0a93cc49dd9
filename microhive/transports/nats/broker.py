"""Durable queues on NATS JetStream: publishing, declaring, and what the broker reads.

- A queue is a stream of its own, ``<prefix>_queue_<name>`` (dots become underscores), with
  two subjects: ``<prefix>.queue.<name>`` for what producers send and
  ``<prefix>.retry.<name>`` for retries. One stream per queue keeps each queue's limits,
  storage and replicas its own, lets its consumer read without a subject filter, and makes
  its length and history exact (docs/transports/nats.md says more).
- Every consumer of a queue, in every process, pulls from one durable consumer
  (``durable`` URL option, default ``microhive``): they compete, as on every transport
  (:mod:`.consumer`).
- A delayed message carries the header ``Microhive-Due`` (Unix ms); the due time is in the
  message, so a delay survives restarts of consumers and of the server (no delayer: the
  consumer naks an early message with the remaining delay). A retry is a new message (the
  envelope's ``attempt`` + 1) on the retry subject, published before the original is acked.
- Dead letters go to the stream ``<prefix>_dead_<name>`` (subject ``<prefix>.dead.<name>``):
  the original bytes, with the reason, attempt and time in headers.
- The streams keep acknowledged messages for replay (:mod:`.tail`), trimmed to ``history``
  (:mod:`.trim`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...envelope import Envelope, new_id
from ...errors import DecodeError, TransportError
from ..links import RECONNECT, LinkDown
from .consumer import NatsConsumer
from .jetstream import CONSUMER_NOT_FOUND, NO_MESSAGE, STREAM_NOT_FOUND, ApiError, JetStream
from .link import Link
from .options import NatsOptions, parse
from .options import consumer_name as instance_name
from .settle import Settler
from .tail import Follower
from .trim import Trimmer
from .wire import (
    ATTEMPT,
    DEAD_AT,
    DUE,
    MSG_ID,
    REASON,
    STATUS,
    Message,
    parse_headers,
    to_float,
    to_int,
)


class Declare(Protocol):
    async def __call__(self, queue: str, *, force: bool = False) -> None: ...


class Consumers:
    """The consumers of one broker and the trimmers of their queues: what a consumer tells
    its broker about its life cycle (:class:`~.consumer.Owner`)."""

    def __init__(self, declare: Declare, jetstream: JetStream) -> None:
        self.declare = declare
        self.jetstream = jetstream
        self.running: set[NatsConsumer] = set()
        self.trimmers: dict[str, Trimmer] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def add(self, consumer: NatsConsumer) -> None:
        self.running.add(consumer)
        trimmer = self.trimmers.get(consumer.queue)
        if trimmer is None:
            trimmer = self.trimmers[consumer.queue] = Trimmer(self.jetstream, consumer.queue)
            trimmer.start()
        trimmer.users += 1

    async def redeclare(self, queue: str) -> None:
        await self.declare(queue, force=True)

    def stopped(self, consumer: NatsConsumer) -> None:
        """It stays known while its keeper runs (it may still hold deliveries)."""
        trimmer = self.trimmers.get(consumer.queue)
        if trimmer is not None:
            trimmer.users -= 1
            if trimmer.users <= 0:
                del self.trimmers[consumer.queue]
                task = asyncio.get_running_loop().create_task(trimmer.stop())
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    def ended(self, consumer: NatsConsumer) -> None:
        self.running.discard(consumer)

    async def abort(self) -> None:
        running, self.running = list(self.running), set()
        for consumer in running:
            await consumer.abort()
        trimmers, self.trimmers = list(self.trimmers.values()), {}
        for trimmer in trimmers:
            await trimmer.stop()


class NatsBroker(QueueBroker):
    """``nats://[user:password@]host[:port][,host:port...][?prefix=...&ack_wait=...]``;
    ``tls://`` for TLS. The options are described in docs/transports/nats.md."""

    capabilities = Capabilities(
        out_of_process=True, durable=True, delayed_delivery=True, dead_letter=True, replay=True
    )

    def __init__(self, url: str = "nats://", **options: Any) -> None:
        super().__init__(url, **options)
        self.options: NatsOptions = parse(url)
        self._link: Link | None = None
        self._jetstream: JetStream | None = None
        self._settler: Settler | None = None
        self._consumers: Consumers | None = None
        self._declared: dict[str, asyncio.Future[None]] = {}
        self._dead_declared: dict[str, asyncio.Future[None]] = {}
        self._subjects: dict[str, str] = {}
        self._followers: set[Follower] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.options.safe_url}>"

    # -- lifecycle -----------------------------------------------------------------------

    async def _connect(self) -> None:
        link = Link(self.options, "broker")
        await link.open()
        self._link = link
        self._jetstream = jetstream = JetStream(link, self.options, repr(self))
        self._settler = Settler(link, self.codec, self._store, self._declare_dead, repr(self))
        self._consumers = Consumers(self._declare, jetstream)

    async def _close(self) -> None:
        for follower in self._followers:  # ends the tail() loops of this broker
            follower.close()
        if self._consumers is not None:
            await self._consumers.abort()
        if self._settler is not None:
            await self._settler.drain()  # settlements on their way: let them land
        link, self._link = self._link, None
        self._declared.clear()
        self._dead_declared.clear()
        if link is not None:
            await link.close()

    def _parts(self) -> tuple[Link, JetStream]:
        link, jetstream = self._link, self._jetstream
        if link is None or jetstream is None or link.closed:
            raise TransportError(f"{self!r} is not connected")
        return link, jetstream

    # -- declaring -----------------------------------------------------------------------

    async def _declare(self, queue: str, *, force: bool = False) -> None:
        """Create the queue's stream and durable consumer (once per broker; ``force``: again)."""
        declared = self._declared.get(queue)
        if declared is not None:
            if not declared.done():
                with contextlib.suppress(Exception):
                    await asyncio.shield(declared)
            if not force and _ok(declared):
                return
        _, jetstream = self._parts()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._declared[queue] = future
        try:
            await jetstream.create_stream(
                self.options.stream(queue),
                [self.options.queue_subject(queue), self.options.retry_subject(queue)],
                f"microhive queue {queue}",
                dedup=self.options.dedup,
            )
            await jetstream.create_consumer(queue)
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
        _, jetstream = self._parts()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._dead_declared[queue] = future
        try:
            await jetstream.create_stream(
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

    # -- storing messages ----------------------------------------------------------------

    async def _store(
        self, queue: str, subject: str, data: bytes, headers: dict[str, str] | None
    ) -> None:
        """Publish to JetStream and wait for its acknowledgement, through outages (until
        ``retry_timeout``). A copy that may have been stored is not sent again until the
        connection it went out on is known to have failed (at least once, not twice at once).
        """
        link, _ = self._parts()
        if link.up:  # the fast path
            try:
                answer = await link.request_raw(subject, data, headers)
            except LinkDown:
                pass
            else:
                if not answer.headers and answer.data[:9] != b'{"error":':
                    return
                if self._stored(answer, subject):
                    return
        await self._store_slowly(queue, subject, data, headers)

    def _stored(self, answer: Message, subject: str) -> bool:
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
        link, _ = self._parts()
        options = self.options
        loop = asyncio.get_running_loop()
        deadline = loop.time() + options.retry_timeout
        failures = 0
        while True:
            try:
                await link.wait_up(deadline)
                answer = await link.request_raw(
                    subject,
                    data,
                    headers,
                    timeout=min(options.request_timeout, max(0.05, deadline - loop.time())),
                )
                if self._stored(answer, subject):
                    return
                # no stream (deleted, or a server that lost its state): declare it again
                if subject.startswith(f"{options.prefix}.dead."):
                    self._dead_declared.pop(queue, None)
                    await self._declare_dead(queue)
                else:
                    await self._declare(queue, force=True)
                continue
            except LinkDown as exc:
                failures += 1
                if link.closed or loop.time() >= deadline:
                    raise TransportError(
                        f"{self!r}: no acknowledgement for a message on {subject!r} within "
                        f"{options.retry_timeout:g} s: {exc}"
                    ) from None
            await asyncio.sleep(min(RECONNECT.delay(failures), max(0.0, deadline - loop.time())))

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
        _, jetstream = self._parts()
        if self._settler is not None:
            await self._settler.acknowledged()
        try:
            info = await jetstream.consumer_info(queue)
        except ApiError as exc:
            if exc.err_code not in (CONSUMER_NOT_FOUND, STREAM_NOT_FOUND):
                raise TransportError(f"{self!r}: length of {queue!r}: {exc}") from None
            await self._declare(queue, force=True)
            info = await jetstream.consumer_info(queue)
        return int(info.get("num_pending", 0)) + int(info.get("num_ack_pending", 0))

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        _, jetstream = self._parts()
        stream = self.options.dead_stream(queue)
        letters: list[DeadLetter] = []
        sequence = 1
        while len(letters) < limit:
            try:
                answer = await jetstream.api(
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
            attempt=to_int(headers.get(ATTEMPT), 1),
            dead_at=to_float(headers.get(DEAD_AT), 0.0),
        )

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        await self._declare(queue)
        link, _ = self._parts()
        consumers, settler = self._consumers, self._settler
        assert consumers is not None and settler is not None, "set by _connect"
        name = instance_name(name, f"consumer.{new_id()[:8]}")
        consumer = NatsConsumer(consumers, link, settler, queue, name, prefetch)
        await consumer.start()
        consumers.add(consumer)
        return consumer

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages sent to the queue, then every new one (:mod:`.tail`)."""
        await self._declare(queue)
        _, jetstream = self._parts()
        reader = Follower(jetstream, queue)
        self._followers.add(reader)
        try:
            async for data in reader.follow(last):
                yield data
        finally:
            self._followers.discard(reader)
            await reader.stop()


def _ok(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None

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
- Every send carries the header ``Microhive`` (:mod:`.plain`); other messages (plain nats-py,
  the ``nats`` CLI) are adopted. A queue with ``address`` lives on that subject verbatim
  (:mod:`.places`). Dead letters are listed, requeued and purged by :mod:`.dead`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import orjson

from ...broker import Consumer, DeadLetter, QueueBroker
from ...capabilities import Capabilities
from ...deadletters import Selection
from ...declarations import Queue
from ...envelope import Envelope, new_id
from ...errors import TransportError
from ...stats import QueueStats
from ..links import RECONNECT, LinkDown
from . import dead, keyed, places, plain, stats
from .consumer import NatsConsumer
from .consumers import Consumers
from .jetstream import JetStream
from .link import Link
from .options import NatsOptions, parse
from .options import consumer_name as instance_name
from .places import Place
from .settle import Settler
from .tail import Follower
from .wire import (
    DUE,
    KEY,
    MSG_ID,
    STATUS,
    Message,
)


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
        self._places: dict[str, Place] = {}
        self._kinds: dict[str, Queue] = {}  # the declaration each queue is sent by
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
            place = await self._place(queue)
            if place.owned:
                await jetstream.create_stream(
                    place.stream,
                    [place.subject, place.retry],
                    f"microhive queue {queue}",
                    dedup=self.options.dedup,
                )
            await jetstream.create_consumer(place)
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

    async def _place(self, queue: str, declaration: Queue | None = None) -> Place:
        """Where ``queue`` lives (looked up once per broker for an ``address``)."""
        place = self._places.get(queue)
        if place is not None:
            return place
        declaration = declaration or self.declaration(queue)
        address = declaration.address
        if address is None:
            place = places.own(self.options, queue)
        else:
            places.check_address(queue, address)
            _, jetstream = self._parts()
            stream = await jetstream.stream_of(address)
            if stream is None or stream == self.options.stream(queue):
                place = places.own(self.options, queue, address)
            else:
                place = places.borrowed(self.options, queue, stream, address)
        self._kinds[queue] = declaration
        self._places[queue] = place
        return place

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

    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        declared = self._declared.get(queue)
        if declared is None or not _ok(declared):
            await self._declare(queue)
        place = self._places[queue]
        declaration = self._kinds[queue]
        if declaration.payload == "json":
            headers = plain.MARKED
            if delay > 0 or key is not None or self.options.dedup:
                headers = dict(headers)
        else:
            data, headers = plain.frame(self.codec, envelope, declaration)
        if delay > 0:
            headers[DUE] = str(round((time.time() + delay) * 1000))
        if key is not None:
            headers[KEY] = key  # so keyed replay can find it by its headers alone
        if self.options.dedup:
            headers[MSG_ID] = f"{envelope.id}:{envelope.attempt}"
        await self._store(queue, place.subject, data, headers)

    async def publish_raw(
        self, queue: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Store bytes as they are, as a foreign producer would (tests of bad input)."""
        await self.connect()
        await self._declare(queue)
        await self._store(queue, self._places[queue].subject, data, headers)

    async def _length(self, queue: str) -> int:
        return stats.length(await self._info(queue))

    async def _stats(self, queue: str) -> QueueStats:
        info = await self._info(queue)
        dead_stream = self.options.dead_stream(queue)
        return await stats.figures(self._parts()[1], queue, info, dead_stream)

    async def _info(self, queue: str) -> dict[str, Any]:
        await self._declare(queue)
        _, jetstream = self._parts()
        if self._settler is not None:
            await self._settler.acknowledged()
        what = f"{self!r}: figures of {queue!r}"
        return await stats.consumer_info(
            jetstream, self._places[queue], partial(self._declare, queue, force=True), what
        )

    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        return [letter for _, letter in await self._dead(queue, limit)]

    async def _dead(self, queue: str, limit: int | None) -> list[tuple[dead.Stored, DeadLetter]]:
        _, jetstream = self._parts()
        options, declaration = self.options, self.declaration(queue)
        items = await dead.read(
            jetstream, options.dead_stream(queue), options.dead_subject(queue), limit
        )
        return [(item, dead.letter(self.codec, declaration, item)) for item in items]

    async def _chosen(
        self, queue: str, selection: Selection
    ) -> list[tuple[dead.Stored, DeadLetter]]:
        """The dead letters ``selection`` takes, oldest first, with where they are stored."""
        unfiltered = (
            selection.reason is None and selection.older_than is None and selection.only is None
        )
        stored = await self._dead(queue, selection.limit if unfiltered else None)
        where = {id(letter): item for item, letter in stored}
        return [
            (where[id(letter)], letter)
            for letter in selection.choose([letter for _, letter in stored])
        ]

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        """Each chosen dead letter is published to ``to`` (acknowledged by JetStream), then
        deleted from the dead stream: a crash in between leaves a copy in both, and the
        message id makes a requeue run again within the de-duplication window store it once."""
        await self._declare(to)
        _, jetstream = self._parts()
        stream = self.options.dead_stream(queue)
        place, target = self._places[to], self._kinds[to]
        moved = 0
        for item, letter in await self._chosen(queue, selection):
            data, headers = dead.republished(self.codec, letter, item, target, stream)
            await self._store(to, place.subject, data, headers)
            await dead.delete(jetstream, stream, item.sequence)
            moved += 1
        return moved

    async def _purge(self, queue: str, selection: Selection) -> int:
        _, jetstream = self._parts()
        stream = self.options.dead_stream(queue)
        chosen = await self._chosen(queue, selection)
        for item, _ in chosen:
            await dead.delete(jetstream, stream, item.sequence)
        return len(chosen)

    async def _declare_queue(self, queue: Queue) -> None:
        """The queue's stream (or an operator's stream's consumer), its durable consumer and
        its dead-letter stream, idempotently."""
        await self._place(queue.name, queue)
        await self._declare(queue.name)
        await self._declare_dead(queue.name)

    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer:
        await self._declare(queue)
        link, _ = self._parts()
        consumers, settler = self._consumers, self._settler
        assert consumers is not None and settler is not None, "set by _connect"
        name = instance_name(name, f"consumer.{new_id()[:8]}")
        place, declaration = self._places[queue], self._kinds[queue]
        consumer = NatsConsumer(consumers, link, settler, queue, name, prefetch, declaration, place)
        await consumer.start()
        consumers.add(consumer)
        return consumer

    async def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The last ``last`` messages sent to the queue, then every new one (:mod:`.tail`)."""
        async for data in self._read(queue, last, None):
            yield data

    async def _tail_keyed(self, queue: str, last: int, key: str) -> AsyncIterator[bytes]:
        """From where the last ``last`` messages with the header ``x-key: key`` begin
        (a scan of the stream's headers, :func:`.keyed.start`), then every new one."""
        await self._declare(queue)
        _, jetstream = self._parts()
        start = await keyed.start(jetstream, self._places[queue], key, last)
        async for data in self._read(queue, last, start):
            yield data

    async def _read(self, queue: str, last: int, start: int | None) -> AsyncIterator[bytes]:
        await self._declare(queue)
        _, jetstream = self._parts()
        declaration = self._kinds[queue]
        reader = Follower(jetstream, self._places[queue])
        self._followers.add(reader)
        try:
            async for item in reader.follow(last, start):
                headers = item.headers
                if headers and headers.get(plain.MARKER) == plain.ENVELOPE:
                    yield item.data
                    continue
                envelope, _ = plain.decode(
                    self.codec, item.data, declaration, headers, b"", item.reply.decode()
                )
                if envelope is not None:  # a plain client's message, as a consumer sees it
                    yield self.codec.encode(envelope)
                else:
                    yield item.data  # undecodable: tail() skips it with a warning
        finally:
            self._followers.discard(reader)
            await reader.stop()


def _ok(future: asyncio.Future[None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None

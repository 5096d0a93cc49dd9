"""Replay: ``tail(last=N)`` reads the queue's stream in order with an ephemeral consumer.

The consumer is filtered on the queue subject only (retries are not new messages), has no
acks, and starts at the stream sequence where the last N of those messages begin. It is read
like nats-py's ordered consumer: a gap, a missing heartbeat or a reconnect makes it again from
after the last message seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ...envelope import new_id
from ...errors import TransportError
from ..links import RECONNECT
from .jetstream import ApiError, JetStream
from .places import Place
from .wire import GROUP, PENDING_MESSAGES, STATUS, Message, ack_metadata, ns

log = logging.getLogger("microhive.nats")


class Follower:
    """An ordered consumer: an ephemeral pull consumer (no acks) read in sequence, made again
    from the next sequence whenever a gap, a missing heartbeat or a reconnect shows that
    it lost its place."""

    BATCH = 256

    def __init__(self, jetstream: JetStream, place: Place, *, headers_only: bool = False) -> None:
        self.headers_only = headers_only  # a scan: headers, no bodies
        self.jetstream = jetstream
        self.link = jetstream.link
        self.options = options = jetstream.options
        self.queue = place.queue
        self.stream = place.stream
        self.subject = place.subject
        self.inbox = f"_INBOX.{new_id()}"
        self.name: str | None = None
        self.incoming: asyncio.Queue[Message | None] = asyncio.Queue()
        self.subscription: Any = None
        self.heartbeat = max(0.1, min(5.0, options.expires / 4))
        self.start = 1  # the stream sequence to make the consumer at
        self.expected = 1  # the consumer sequence of the next message
        self.requested = 0
        self.closing = False  # the broker is closing: the tail ends

    def close(self) -> None:
        """The broker is closing: end the tail."""
        self.closing = True
        self.incoming.put_nowait(None)

    async def follow(self, last: int, start: int | None = None) -> AsyncIterator[Message]:
        """The messages from where ``last`` of them remain (or from sequence ``start``)."""
        link = self.link
        self.subscription = await link.subscribe(self.inbox, self._receive)
        link.watch(up=self._reconnected)
        self.start, skip = await self._start(last) if start is None else (start, 0)
        failures = 0
        while not self.closing and not link.closed:
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
                await self._ask()
            item = await self._next()
            if item is None:
                continue
            if item.headers and GROUP in item.headers and not self.headers_only:
                continue  # a retry on an addressed queue's own subject: not a new message
            if skip > 0:
                skip -= 1
                continue
            yield item

    async def _ask(self) -> None:
        body = {
            "batch": self.BATCH,
            "expires": ns(self.options.expires),
            "idle_heartbeat": ns(self.heartbeat),
        }
        with contextlib.suppress(Exception):
            await self.link.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.name}",
                orjson.dumps(body),
                reply=self.inbox,
            )
            self.requested += self.BATCH

    async def _next(self) -> Message | None:
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
        return item

    async def _start(self, last: int) -> tuple[int, int]:
        """The first stream sequence to read, and how many of the queue's messages from
        there to skip, so that ``last`` of them remain."""
        state = await self.jetstream.stream_state(self.stream)
        first, newest = int(state.get("first_seq", 1)) or 1, int(state.get("last_seq", 0))
        if last == 0 or newest == 0:
            return newest + 1, 0
        start = max(first, newest - last + 1)
        while True:
            count = await self.count(start)
            if count >= last or start <= first:
                return start, max(0, count - last)
            start = max(first, start - 2 * (last - count))  # retries in between: look further

    async def count(self, start: int) -> int:
        """How many messages of the queue subject the stream holds from ``start`` on."""
        answer = await self._create(start, count_only=True)
        return int(answer.get("num_pending", 0))

    async def _create(self, start: int, *, count_only: bool = False) -> dict[str, Any]:
        config: dict[str, Any] = {
            "deliver_policy": "by_start_sequence",
            "opt_start_seq": max(1, start),
            "ack_policy": "none",
            "filter_subject": self.subject,
            "replay_policy": "instant",
            "inactive_threshold": ns(max(5.0, 4 * self.options.expires)),
            "num_replicas": 1,
            "mem_storage": True,
            "max_deliver": 1,
        }
        if self.headers_only:
            config["headers_only"] = True
        try:
            answer = await self.jetstream.api(
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
        if not name or not self.link.up:
            return
        with contextlib.suppress(TransportError):
            await self.jetstream.request(
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
        self.link.unwatch(self._reconnected)
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await self.link.unsubscribe(subscription)
        await self._delete(self.name)
        self.name = None

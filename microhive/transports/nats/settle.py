"""How deliveries settle: the small interface between a delivery and its broker.

A delivery acks, naks or sends in-progress notes through :class:`Settler`, which also stores
its retry or dead letter (with the broker's own publish, handed in as a function) before it
acks the original. Acks of one event-loop iteration go out together and the last of them asks
the server to confirm, so ``length()`` can wait until the server has counted them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import TransportError
from .link import Link
from .places import Place
from .plain import ENVELOPE, MARKER, SENT_AT, frame
from .wire import (
    ACK,
    ATTEMPT,
    DEAD_AT,
    DELIVERIES,
    DUE,
    GROUP,
    MESSAGE_ID,
    MSG_ID,
    QUEUE,
    REASON,
    SEQUENCE,
    header_text,
)

log = logging.getLogger("microhive.nats")

Store = Callable[[str, str, bytes, "dict[str, str] | None"], Awaitable[None]]
"""Publishes ``(queue, subject, data, headers)`` and returns once JetStream stored it."""


class Settled(Protocol):
    """What the settler needs to know of a delivery."""

    raw: bytes
    envelope: Envelope | None
    headers: dict[str, str] | None
    reply: str
    sequence: int
    delivered: int


class Settler:
    """The broker as its deliveries see it: acks, naks, and storing retries and dead letters."""

    def __init__(
        self,
        link: Link,
        codec: Codec,
        store: Store,
        declare_dead: Callable[[str], Awaitable[None]],
        owner: str,
    ) -> None:
        self.link = link
        self.codec = codec
        self.options = link.options
        self._store = store
        self._declare_dead = declare_dead
        self._owner = owner
        self._acks: list[str] = []
        self._acking = False
        self._background: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        """Run ``coroutine`` in the background; :meth:`drain` waits for it at close."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Let settlements on their way land (within ``request_timeout``)."""
        if self._background:
            await asyncio.wait(set(self._background), timeout=self.options.request_timeout)

    # -- acknowledgements, confirmed once per event-loop iteration -------------------------

    def ack(self, reply: str, delivery: Settled | None) -> None:
        """``+ACK``, sent with the other acks of this event-loop iteration. The last one
        of each batch asks the server to confirm: once it has, the server has processed
        every ack before it too, and a length query anywhere in this process counts them."""
        if self.link.client is None:
            if delivery is not None:
                log.warning(
                    "%s is closed: message %d not acknowledged; it will be delivered again",
                    self._owner,
                    delivery.sequence,
                )
            return
        self._acks.append(reply)
        if not self._acking:
            self._acking = True
            self.spawn(self._send_acks())

    async def _send_acks(self) -> None:
        self._acking = False
        replies, self._acks = self._acks, []
        link = self.link
        client = link.client
        if not replies or client is None:
            return
        confirm, future = link.expect()
        try:
            for reply in replies[:-1]:
                await client.publish(reply, ACK)
            await client.publish(replies[-1], ACK, reply=confirm)
        except Exception as exc:
            link.forget(confirm)
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
            link.forget(confirm)
        finally:
            unconfirmed.discard(future)

    async def acknowledged(self) -> None:
        """Wait until the acks sent so far by every broker of this process are confirmed."""
        await asyncio.sleep(0)  # let acks of this iteration go out
        waiting = set(_unconfirmed())
        if waiting:
            await asyncio.wait(waiting, timeout=self.options.request_timeout)

    async def tell(self, reply: str, body: bytes, what: str, delivery: Settled | None) -> None:
        """A nak or an in-progress note: fire and forget (buffered while reconnecting)."""
        client = self.link.client
        if client is None:
            if delivery is not None:
                log.warning(
                    "%s is closed: %s of message %d not sent; it will be delivered again",
                    self._owner,
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

    # -- retries and dead letters: stored first, then the original is acked -------------

    async def retry(
        self,
        delivery: Settled,
        queue: str,
        delay: float,
        reason: str,
        place: Place,
        declaration: Queue,
    ) -> None:
        """The next attempt as a new message on the retry subject, for this durable only,
        in the queue's form (an encoded envelope, or the text or bytes with headers)."""
        assert delivery.envelope is not None, "an undecodable message cannot be retried"
        envelope, options = delivery.envelope, self.options
        if declaration.payload == "json":
            following = envelope.next_attempt(**{"x-last-error": reason})
            data, headers = self.codec.encode(following), {MARKER: ENVELOPE}
        else:  # the envelope's headers become NATS headers: one line each
            following = envelope.next_attempt(**{"x-last-error": header_text(reason)})
            data, headers = frame(self.codec, following, declaration)
        headers[GROUP] = place.durable
        if delay > 0:
            headers[DUE] = str(round((time.time() + delay) * 1000))
        if options.dedup:
            headers[MSG_ID] = f"{envelope.id}:{envelope.attempt + 1}"
        if await self._instead(delivery, "retry", queue, place.retry, data, headers):
            self.ack(delivery.reply, delivery)

    async def bury(self, delivery: Settled, queue: str, reason: str) -> None:
        """The original bytes to the queue's dead-letter stream, with the reason in headers."""
        envelope = delivery.envelope
        headers = {
            key: value for key, value in (delivery.headers or {}).items() if key not in _GONE
        }
        headers |= {
            REASON: header_text(reason) or "-",
            ATTEMPT: str(envelope.attempt if envelope is not None else 1),
            QUEUE: queue,
            DEAD_AT: repr(time.time()),
            SEQUENCE: str(delivery.sequence),
            DELIVERIES: str(delivery.delivered),
        }
        if envelope is not None:
            headers[MESSAGE_ID] = envelope.id
            headers[SENT_AT] = repr(envelope.sent_at)
        subject = self.options.dead_subject(queue)
        if await self._instead(delivery, "dead-letter", queue, subject, delivery.raw, headers):
            self.ack(delivery.reply, delivery)

    async def _instead(
        self,
        delivery: Settled,
        what: str,
        queue: str,
        subject: str,
        data: bytes,
        headers: dict[str, str],
    ) -> bool:
        """Store what replaces ``delivery``; on failure the original is delivered again
        (never lost, never raised into the worker)."""
        try:
            if what == "dead-letter":
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


_GONE = frozenset({DUE, GROUP, MSG_ID})
"""Headers of the original that a dead letter does not keep (they would act again)."""

_UNCONFIRMED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, set[asyncio.Future[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _unconfirmed() -> set[asyncio.Future[Any]]:
    """Ack confirmations awaited by the brokers of the running event loop (this process)."""
    return _UNCONFIRMED.setdefault(asyncio.get_running_loop(), set())

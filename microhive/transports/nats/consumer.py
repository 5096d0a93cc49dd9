"""A consumer of one queue: pulls from the queue's durable consumer, and its deliveries.

- It asks for as many messages as it has free prefetch slots (pull requests that wait up to
  ``expires`` on the server, with idle heartbeats; a new one as soon as half the slots are
  free), and sends in-progress acks while a delivery is held, so ``ack_wait`` only has to
  cover a crash: then the server delivers the message again.
- A message delivered before its ``Microhive-Due`` time is not handed out but negatively
  acknowledged with the remaining delay; another durable's retry is acked and skipped.
- Deliveries settle through :class:`~.settle.Settler` (acks, naks, retries and dead
  letters), never through the broker itself.
- A message that could not be taken in (a bug on the way from nats-py's parser) is handed
  out as bad input, so the worker dead-letters it with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import orjson

from ...broker import Consumer, Delivery
from ...declarations import Queue
from ...envelope import Envelope, new_id
from ...errors import ConsumerClosed
from ...stopping import cancel_and_wait
from ..handover import Handover
from ..links import RECONNECT
from . import plain
from .delivery import NatsDelivery
from .link import Link
from .places import Place
from .settle import Settler
from .wire import (
    DESCRIPTION,
    DUE,
    GROUP,
    IN_PROGRESS,
    NAK,
    PENDING_MESSAGES,
    STATUS,
    ack_metadata,
    ns,
)

log = logging.getLogger("microhive.nats")


class Owner(Protocol):
    """The broker as its consumers see it: their life cycle, nothing else."""

    async def redeclare(self, queue: str) -> None: ...

    def stopped(self, consumer: NatsConsumer) -> None:
        """``consumer`` stopped its intake (it may still hold deliveries)."""

    def ended(self, consumer: NatsConsumer) -> None:
        """``consumer`` holds nothing any more."""


class NatsConsumer(Consumer):
    """Pulls one queue's durable consumer for one consuming agent instance."""

    def __init__(
        self,
        owner: Owner,
        link: Link,
        settler: Settler,
        queue: str,
        name: str,
        prefetch: int,
        declaration: Queue,
        place: Place,
    ) -> None:
        self.place = place
        self.owner = owner
        self.declaration = declaration
        self.link = link
        self.settler = settler
        self.options = options = link.options
        self.queue = queue
        self.name = name
        self.prefetch = prefetch
        self.durable = place.durable
        self.stream = place.stream
        self.inbox = f"_INBOX.{new_id()}"
        self.closed = False
        self.held: dict[int, NatsDelivery] = {}  # stream sequence -> delivered, not settled
        self.handover: Handover[NatsDelivery] = Handover()  # held, not yet taken by a worker
        self.requested = 0  # messages asked for by pull requests still open
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.durable}"
        self._heartbeat = max(0.1, min(5.0, options.expires / 4))
        self._pull = orjson.dumps(
            {"expires": ns(options.expires), "idle_heartbeat": ns(self._heartbeat)}
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
        self._subscription = await self.link.subscribe(self.inbox, self._on_message, self._rescue)
        self.link.watch(up=self._reconnected)
        self._fetcher = self._loop.create_task(self._fetch(), name=f"microhive.nats.{self.name}")
        self._keeper = self._loop.create_task(self._keep(), name=f"microhive.nats.{self.name}.k")

    # -- handing out -------------------------------------------------------------------

    async def get(self) -> Delivery:
        if self.closed:
            raise ConsumerClosed(self.queue)
        return await self.handover.take()

    def ready(self, limit: int) -> list[Delivery]:
        return list(self.handover.take_now(limit))

    def settled(self, delivery: NatsDelivery) -> None:
        """``delivery`` is settled (or being settled): its slot is free."""
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
        if self.closed:  # arrived after close: give it back at once
            await self.settler.tell(reply, NAK, "release", None)
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
        if headers and (GROUP in headers or DUE in headers):  # most carry only the marker
            if await self._not_for_now(reply, headers):
                return
            early = DUE in headers
        envelope, error = plain.decode(
            self.settler.codec, data, self.declaration, headers, subject, reply
        )
        self._hold(reply, sequence, delivered, data, envelope, error, early, headers)

    def _hold(
        self,
        reply: str,
        sequence: int,
        delivered: int,
        data: bytes,
        envelope: Envelope | None,
        error: str | None,
        early: bool = False,
        headers: dict[str, str] | None = None,
    ) -> None:
        delivery = NatsDelivery(
            self, reply, sequence, delivered, data, envelope, error, self._loop.time(), headers
        )
        self.held[sequence] = delivery
        limit = self.options.max_deliver
        if limit and delivered > limit + early:  # a delayed one was delivered early once
            self._crash_looped(delivery, limit)
        else:
            self.handover.give(delivery)

    def _rescue(self, subject: bytes, raw_reply: bytes, data: bytes, reason: str) -> None:
        """Taking a message in failed (a bug, logged by the link): hand it out as bad input,
        so the worker dead-letters it with the reason, instead of leaving it to redelivery."""
        metadata = ack_metadata(raw_reply.decode(errors="replace")) if raw_reply else None
        if metadata is None or self.closed:
            return  # a status note, or closing: the server delivers it again after ack_wait
        delivered, sequence, _ = metadata
        if sequence not in self.held:
            error = f"it could not be taken in ({reason})"
            self._hold(raw_reply.decode(), sequence, delivered, data, None, error)

    async def _not_for_now(self, reply: str, headers: dict[str, str]) -> bool:
        """Skip another durable's retry; send a message delivered before it is due back
        with the remaining delay. True when the message is not handed out."""
        group = headers.get(GROUP)
        if group is not None and group != self.durable:
            self.settler.ack(reply, None)
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
        await self.settler.tell(reply, NAK + b' {"delay": %d}' % ns(wait), "delay", None)
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
        self.settler.spawn(
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
                await self.owner.redeclare(self.queue)
            except Exception as exc:
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
        link = self.link
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
                if not link.up:
                    await link.wait_up()
                    continue
                if self._redeclaring is not None and not self._redeclaring.done():
                    await self._redeclaring
                    continue
                self.requested += free
                self._seen = self._loop.time()
                body = self._pull + b',"batch":%d}' % free
                await link.publish(self._next_subject, body, reply=self.inbox)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end the loop
                self.requested = 0
                failures += 1
                if link.closed:
                    return
                if failures == 1:
                    log.warning("%r: pull request failed: %s", self, self.options.scrub(str(exc)))
                await asyncio.sleep(RECONNECT.delay(failures))

    async def _keep(self) -> None:
        """Tell the server that held messages are in progress, so ack_wait never passes
        while a handler runs (or a delivery waits for a free worker)."""
        every = max(0.05, self.options.ack_wait / 3)
        try:
            while not (self.closed and not self.held):
                await asyncio.sleep(every / 2)
                now = self._loop.time()
                stale = [d for d in self.held.values() if now - d.touched >= every]
                for delivery in stale:
                    delivery.touched = now
                    await self.settler.tell(delivery.reply, IN_PROGRESS, "in-progress ack", None)
        finally:
            if self.closed:
                self.owner.ended(self)

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop pulling; give back what was received but not handed out. Handed-out
        deliveries stay valid (and kept from redelivery) until they are settled."""
        if self.closed:
            return
        self.closed = True
        self.link.unwatch(self._reconnected)
        self.owner.stopped(self)
        self.handover.fail(ConsumerClosed(self.queue))
        await cancel_and_wait(self._fetcher, self._redeclaring)
        # unsubscribe on the server first and wait for its answer (PING/PONG): whatever it
        # sent before is received (and given back), nothing comes after
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await self.link.unsubscribe(subscription, drain=True)
        for delivery in [d for d in self.handover.clear() if not d.settled]:
            await delivery.release()

    async def abort(self) -> None:
        """The broker is closing: stop everything, settle nothing (as a crash would)."""
        self.closed = True
        self.link.unwatch(self._reconnected)
        self.handover.fail(ConsumerClosed(self.queue))
        await cancel_and_wait(self._fetcher, self._keeper, self._redeclaring)
        self.held.clear()
        self.handover.clear()
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await self.link.unsubscribe(subscription)

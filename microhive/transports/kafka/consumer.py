"""A consumer of one queue: a member of the broker's consumer group on the queue's topic.

- It reads with ``getmany(max_records=free slots)``, so it never holds more than
  ``prefetch`` unsettled messages; when full it pauses its partitions (and still polls, so
  the group does not think it died).
- Settling a message only marks its offset done; commits go out in the background, at
  once when the consumer has nothing left in hand and at most every ``commit_interval``
  while it is busy, and never past an offset that is not done (:mod:`.offsets`).
- A rebalance that takes partitions away first drops what was read from them but not
  handed out, waits a little (``revoke_wait``) for their handlers, and commits.
- ``close()`` stops intake and gives back what was not handed out; the group membership
  stays until the deliveries already handed out are settled, so they can still be
  committed, then the consumer commits and leaves the group.
- A delivery settles through its consumer only (:class:`Settling`): retries and dead
  letters are produced by the :class:`~.producer.Outlet`, the offset is marked here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from ...broker import Consumer, Delivery
from ...codecs import Codec
from ...declarations import Queue
from ...envelope import Envelope
from ...errors import ConsumerClosed, DecodeError
from ...stopping import cancel_and_wait
from ..handover import Handover
from .delivery import KafkaDelivery
from .offsets import Listener, Offsets, commit, pause_after_failure, stop
from .options import KafkaOptions
from .plain import MARKED, outgoing, received
from .producer import Outlet
from .wire import ATTEMPT, CONTROL, GROUP, header, whole_number

log = logging.getLogger("microhive.kafka")

MARK = MARKED[0]


class KafkaConsumer(Consumer):
    """A member of the queue's consumer group; implements :class:`Settling` for its
    deliveries."""

    def __init__(
        self,
        options: KafkaOptions,
        outlet: Outlet,
        codec: Codec,
        queue: Queue,
        name: str,
        prefetch: int,
        left: Callable[[KafkaConsumer], None],
    ) -> None:
        self.options = options
        self.declaration = queue  # its payload kind: how plain records are adopted
        self.outlet = outlet
        self.codec = codec
        self.left = left  # told once the consumer left its group
        self.queue = queue.name
        self.topic = options.topic(queue.name)
        self.name = name
        self.prefetch = prefetch
        self.group = options.group
        self.client = AIOKafkaConsumer(
            **options.common(), **options.group_settings(), group_id=options.group_id(queue.name)
        )
        self.partitions: dict[Any, Offsets] = {}
        self.handover: Handover[KafkaDelivery] = Handover()  # read, not yet taken by a worker
        self.unsettled = 0  # read and not settled: buffered or in a handler
        self.closed = False
        self.paused = False
        self._room = asyncio.Event()  # a slot came free
        self._change = asyncio.Event()  # something was settled (a rebalance waits for it)
        self._dirty = asyncio.Event()  # something was settled: commit
        self._idle = asyncio.Event()  # nothing in hand: commit now
        self._assignment = asyncio.Event()
        self._committing = asyncio.Lock()
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._fetcher: asyncio.Task[None] | None = None
        self._committer: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<KafkaConsumer {self.name} of {self.queue!r} on {self.options.safe_url}>"

    async def start(self) -> None:
        """Join the group; returns once the first assignment arrived (or after a while:
        the consumer keeps trying in the background), so messages sent next are seen."""
        self.client.subscribe([self.topic], listener=Listener(self._revoked, self._assigned))
        await self.client.start()
        loop = asyncio.get_running_loop()
        self._fetcher = loop.create_task(self._fetch(), name=f"microhive.kafka.{self.name}")
        self._committer = loop.create_task(self._commits(), name=f"microhive.kafka.{self.name}.c")
        wait = max(10.0, 3 * self.options.session_timeout)
        try:
            async with asyncio.timeout(wait):
                await self._assignment.wait()
        except TimeoutError:
            log.warning("%r: no partitions assigned after %.0f s; still trying", self, wait)

    # -- reading -------------------------------------------------------------------------

    async def _fetch(self) -> None:
        client = self.client
        prefetch = self.prefetch
        failures = 0
        while not self.closed:
            free = prefetch - self.unsettled
            try:
                if free <= 0:
                    await self._wait_for_room()
                    continue
                if self.paused:
                    client.resume(*client.assignment())
                    self.paused = False
                batch = await client.getmany(timeout_ms=1000, max_records=free)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end the loop
                failures += 1
                await pause_after_failure(failures, f"{self!r}: reading failed", exc)
                continue
            for tp, records in batch.items():
                offsets = self.partitions.get(tp)
                if offsets is not None:
                    self._take(offsets, records)

    async def _wait_for_room(self) -> None:
        """Full: pause the partitions (aiokafka then stops fetching ahead, which costs this
        event loop much time otherwise) and wait for a free slot; still full after a second,
        poll anyway, so the group does not take us for dead (max_poll_interval)."""
        client = self.client
        if not self.paused:
            client.pause(*client.assignment())
            self.paused = True
        self._room.clear()
        try:
            async with asyncio.timeout(1.0):
                await self._room.wait()
        except TimeoutError:
            client.pause(*client.assignment())  # partitions assigned meanwhile
            await client.getmany(timeout_ms=0)

    def _take(self, offsets: Offsets, records: list[Any]) -> None:
        codec = self.codec
        group = self.group
        declaration = self.declaration
        taken = []
        for record in records:
            offset = record.offset
            headers: Any = record.headers or ()
            raw = record.value or b""
            if len(headers) == 1 and headers[0] == MARK:  # a plain send of microhive's
                if not offsets.take(offset):
                    continue
                try:
                    envelope: Envelope | None = codec.decode(raw)
                    error = None
                except DecodeError as exc:
                    envelope, error = None, str(exc)
                taken.append(
                    KafkaDelivery(self, offsets, offset, record.key, raw, envelope, error, headers)
                )
                continue
            owner = header(headers, GROUP) if headers else None
            if owner is not None and owner != group:
                offsets.skip(offset)  # another group's retry
                continue
            if not offsets.take(offset):
                continue
            envelope, error = received(codec, record, declaration)
            if envelope is not None and owner is not None:  # a retry
                attempt = whole_number(header(headers, ATTEMPT))
                if attempt is not None and attempt > envelope.attempt:
                    envelope.attempt = attempt
            taken.append(
                KafkaDelivery(self, offsets, offset, record.key, raw, envelope, error, headers)
            )
        if taken:
            self.unsettled += len(taken)
            self._idle.clear()
            self.handover.give_all(taken)

    async def get(self) -> Delivery:
        if self.closed and not self.handover:
            raise ConsumerClosed(self.queue)
        return await self.handover.take()

    def ready(self, limit: int) -> list[Delivery]:
        return list(self.handover.take_now(limit))

    # -- settling and committing ---------------------------------------------------------

    async def requeue(self, envelope: Envelope, key: bytes | None, delay: float) -> None:
        if self.declaration.payload == "json":
            data, marks = self.codec.encode(envelope), MARKED
        else:
            data, marks = outgoing(self.declaration, envelope, b"")
        await self.outlet.requeue(self.queue, data, key, delay, envelope.attempt, marks)

    async def bury(self, delivery: KafkaDelivery, reason: str, attempt: int) -> None:
        kept = [(k, v) for k, v in delivery.headers or () if k not in CONTROL]
        await self.outlet.bury(self.queue, delivery.raw, delivery.key, reason, attempt, kept)

    def settled(self, delivery: KafkaDelivery, done: bool) -> None:
        self.unsettled -= 1
        offsets = delivery.offsets
        if done:
            offsets.done(delivery.offset)
        else:
            offsets.release(delivery.offset)
            if not self.closed and offsets.live:
                with contextlib.suppress(Exception):  # read it again (and any lower one)
                    self.client.seek(offsets.tp, min(offsets.released))
        self._room.set()
        self._change.set()
        if self.unsettled <= 0:
            self._idle.set()
        self._dirty.set()

    async def _commits(self) -> None:
        """Commit in the background: when idle at once, when busy every commit_interval."""
        interval = self.options.commit_interval
        while True:
            await self._dirty.wait()
            if interval and self.unsettled > 0 and not self.closed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self._idle.wait()
            self._dirty.clear()
            await self.flush()
            if self.closed and self.unsettled <= 0:
                await self._leave()
                return

    async def flush(self) -> None:
        """Commit what is done now (``length()`` calls it, so it counts local acks)."""
        async with self._committing:
            await commit(self.client, list(self.partitions.values()), repr(self))

    # -- rebalancing ---------------------------------------------------------------------

    def _assigned(self, assigned: Any) -> None:
        for tp in assigned:
            if tp not in self.partitions:
                self.partitions[tp] = Offsets(tp)
        self.paused = False
        self._assignment.set()
        if assigned:
            log.debug("%r: assigned %s", self, sorted(tp.partition for tp in assigned))

    async def _revoked(self, revoked: Any) -> None:
        lost = [self.partitions[tp] for tp in revoked if tp in self.partitions]
        if not lost:
            return
        lost_set = set(revoked)
        kept = []
        for delivery in self.handover.clear():  # read, not handed out: the next owner reads them
            if delivery.offsets.tp in lost_set and delivery.withdraw():
                self.unsettled -= 1
            else:
                kept.append(delivery)
        self.handover.give_all(kept)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.revoke_wait
        while any(offsets.busy() for offsets in lost) and loop.time() < deadline:
            self._change.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._change.wait()
        async with self._committing:
            await commit(self.client, lost, repr(self))
        for offsets in lost:
            offsets.live = False
            del self.partitions[offsets.tp]
        if self.unsettled <= 0:
            self._idle.set()

    # -- closing -------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop intake; what was read and not handed out is given back. The consumer stays
        in its group until what it handed out is settled, then commits and leaves."""
        if self.closed:
            return
        self.closed = True
        self.handover.fail(ConsumerClosed(self.queue))
        await cancel_and_wait(self._fetcher)
        for delivery in self.handover.clear():
            if delivery.withdraw():
                self.unsettled -= 1
        self._dirty.set()
        if self.unsettled <= 0:
            await asyncio.shield(self._finished)

    async def _leave(self) -> None:
        try:
            await stop(self.client, repr(self))
        finally:
            self.left(self)
            if not self._finished.done():
                self._finished.set_result(None)

    async def abort(self) -> None:
        """The broker is closing: commit what is done, leave the group; deliveries still
        held are not committed (they are read again, as after a crash)."""
        self.closed = True
        self.handover.fail(ConsumerClosed(self.queue))
        await cancel_and_wait(self._fetcher, self._committer)
        self.handover.clear()
        with contextlib.suppress(Exception):
            await self.flush()
        for offsets in self.partitions.values():
            offsets.live = False
        if not self._finished.done():
            await self._leave()

"""How a delivery is settled in Redis: the one interface deliveries speak to.

A :class:`Settler` belongs to one consumer (one reader of one queue in one group). Acks go
into the broker's batched XACKs; retries, dead letters and releases are one command or Lua
script each, run through an outage. A settlement that cannot be made leaves the entry
pending: it is delivered again after ``claim_idle`` (never lost, never raised into the
worker).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...codecs import Codec
from ...errors import PayloadError, TransportError
from ..links import LinkDown
from .acks import Acks
from .commands import Commands
from .entries import kept
from .scripts import DEAD_LETTER, REQUEUE, SCHEDULE
from .wire import QueueKeys, ms

if TYPE_CHECKING:
    from .consumer import RedisDelivery

log = logging.getLogger("microhive.redis")

RELEASED_IDLE = 1 << 40
"""XCLAIM ... IDLE for released entries: idle enough for any consumer's next XAUTOCLAIM."""


class Settler:
    def __init__(
        self,
        *,
        commands: Commands,
        acks: Acks,
        codec: Codec,
        queue: str,
        keys: QueueKeys,
        group: str,
        name: str,
        settled: Callable[[RedisDelivery], None],
        wake: Callable[[str, float], None],
    ) -> None:
        self.commands = commands
        self.acks = acks
        self.codec = codec
        self.queue = queue
        self.keys = keys
        self.group = group
        self.name = name
        self.retries = commands.options.retries(queue, group)
        self._settled = settled  # the consumer's bookkeeping: one slot free
        self._wake = wake  # the delayer: something falls due in ``delay`` s

    def ack(self, delivery: RedisDelivery) -> None:
        """XACK, batched with the other acks of this event-loop iteration."""
        self._settled(delivery)
        self.acks.ack(self.keys.stream, self.group, delivery.entry_id)

    def ack_foreign(self, entry_id: bytes) -> None:
        """Another group's retry, read by this group: not ours, acknowledged unseen."""
        self.acks.ack(self.keys.stream, self.group, entry_id)

    async def retry(self, delivery: RedisDelivery, delay: float, reason: str) -> None:
        """The next attempt, for this group only: at the back of the stream now, or into
        the group's retry set until due; the failed entry is acknowledged in the same step."""
        assert delivery.envelope is not None, "an undecodable message cannot be retried"
        try:
            data = self.codec.encode(delivery.envelope.next_attempt(**{"x-last-error": reason}))
        except PayloadError as exc:  # a plain bytes payload: JSON cannot carry its next attempt
            await self.dead_letter(delivery, f"{reason} (not retried: {exc})")
            return
        self._settled(delivery)
        stream = self.keys.stream
        if delay > 0:
            keys: tuple[Any, ...] = (self.retries, stream)
            args: tuple[Any, ...] = (ms(delay), data, self.group, delivery.entry_id)
            await self._settle(delivery, "retry", self.commands.script_once, SCHEDULE, keys, args)
            self._wake(self.queue, delay)
        else:
            keys = (stream,)
            args = (data, self.group, delivery.entry_id, self.commands.options.maxlen)
            await self._settle(delivery, "retry", self.commands.script_once, REQUEUE, keys, args)

    async def dead_letter(self, delivery: RedisDelivery, reason: str) -> None:
        """Into the dead-letter stream with reason, attempt and time; acknowledged with it."""
        self._settled(delivery)
        envelope = delivery.envelope
        fields: list[Any] = [
            b"data",
            delivery.raw,
            b"reason",
            reason,
            b"attempt",
            envelope.attempt if envelope is not None else 1,
            b"dead_at",
            repr(time.time()),
            b"queue",
            self.queue,
            b"group",
            self.group,
            b"entry",
            delivery.entry_id,
        ]
        if envelope is not None:
            fields += [b"id", envelope.id]
        fields += kept(delivery.fields)
        keys = (self.keys.stream, self.keys.dead)
        args = (self.group, delivery.entry_id, self.commands.options.dead_maxlen, *fields)
        await self._settle(
            delivery, "dead-letter", self.commands.script_once, DEAD_LETTER, keys, args
        )

    async def release(self, delivery: RedisDelivery) -> None:
        """Give it back: claimable at once by any consumer of the group."""
        self._settled(delivery)
        await self._settle(delivery, "release", self.release_now, [delivery.entry_id])

    def release_now(self, entry_ids: list[bytes]) -> Awaitable[Any]:
        """Make entries claimable at once by any consumer of the group (first in line)."""
        return self.commands.require().send(
            b"XCLAIM",
            self.keys.stream,
            self.group,
            self.name,
            0,
            *entry_ids,
            b"IDLE",
            RELEASED_IDLE,
            b"JUSTID",
        )

    async def _settle(
        self,
        delivery: RedisDelivery,
        what: str,
        step: Callable[..., Awaitable[Any]],
        *args: Any,
    ) -> None:
        """Settle through an outage; if it cannot, the entry stays pending and is delivered
        again after ``claim_idle``."""
        try:
            try:
                await step(*args)
            except LinkDown:
                await self.commands.retrying(step, *args)
        except TransportError as exc:
            log.error(
                "%s of message %s on %r failed: %s; it will be delivered again",
                what,
                delivery.message_id,
                self.queue,
                exc,
            )

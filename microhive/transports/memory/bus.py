"""Signals and call replies inside one process: a publish is a direct hand-over.

With the default JSON codec on both sides, a signal skips the envelope's bytes: only its
payload goes through JSON (so it must be JSON-able and within the size limit, and every
receiving bus gets its own copy, exactly as off a real wire); the envelope's other fields
are immutable and handed over as they are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ...bus import SignalBus
from ...capabilities import Capabilities
from ...codecs import Codec, JsonCodec
from ...envelope import Envelope
from .hive import Hive, hive_for

FAIRNESS = 16
"""A sender lets the receivers run after this many signals in a row, as a socket's send
buffer would make it wait: the backlog (and the garbage collector's work) stays small."""


class Mailbox:
    """How a bus receives in the hive: the entry points it hands out itself, so that other
    buses deliver to it without reaching into it."""

    __slots__ = ("codec", "deliver", "dispatch", "reply")

    def __init__(
        self,
        codec: Codec,
        deliver: Callable[[str, bytes], None],
        dispatch: Callable[[str, Envelope], None],
        reply: Callable[[bytes], None],
    ) -> None:
        self.codec = codec
        self.deliver = deliver  # a signal's bytes
        self.dispatch = dispatch  # a signal already decoded (its own copy)
        self.reply = reply  # the bytes of an answer to one of its calls


class MemoryBus(SignalBus):
    """``memory://[name]``: signals reach every bus of the same hive on this event loop."""

    capabilities = Capabilities(out_of_process=False, durable=False)

    def __init__(self, url: str = "memory://", *, hive: Hive | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._given_hive = hive
        self._published = 0
        self._hive: Hive | None = None
        self._mailbox = Mailbox(self.codec, self._deliver, self._dispatch, self._deliver_reply)

    @property
    def hive(self) -> Hive:
        if self._hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        return self._hive

    async def _connect(self) -> None:
        self._hive = self._given_hive or hive_for(self.url)
        self._hive.inboxes[self.inbox] = self._mailbox

    async def _close(self) -> None:
        hive = self.hive
        hive.inboxes.pop(self.inbox, None)
        for mailboxes in hive.listeners.values():
            mailboxes.discard(self._mailbox)
        self._hive = None

    async def _publish(self, channel: str, data: bytes) -> None:
        hive = self._hive
        if hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        for mailbox in tuple(hive.listeners.get(channel, ())):
            mailbox.deliver(channel, data)

    async def _publish_envelope(self, envelope: Envelope) -> None:
        codec = self.codec
        if type(codec) is not JsonCodec:
            await super()._publish_envelope(envelope)
            return
        payload = codec.encode_value(envelope.payload)
        if not self._connected:
            await self.connect()
        hive = self.hive
        channel = envelope.name
        original: Envelope | None = envelope  # this send's own: the first bus may keep it
        for mailbox in tuple(hive.listeners.get(channel, ())):
            if type(mailbox.codec) is not JsonCodec:
                mailbox.deliver(channel, codec.encode(envelope))
            elif original is not None:
                original.payload = codec.decode_value(payload)
                original = None
                mailbox.dispatch(channel, envelope)
            else:
                mailbox.dispatch(channel, _copy(envelope, codec.decode_value(payload)))
        self._published += 1
        if self._published % FAIRNESS == 0:
            await asyncio.sleep(0)

    async def _send_direct(self, address: str, data: bytes) -> None:
        mailbox = self.hive.inboxes.get(address)
        if mailbox is not None:  # a caller that is gone no longer waits for its answer
            mailbox.reply(data)

    async def _subscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self.hive.listeners.setdefault(channel, set()).add(self._mailbox)

    async def _unsubscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self.hive.listeners.get(channel, set()).discard(self._mailbox)


def _copy(envelope: Envelope, payload: Any) -> Envelope:
    return Envelope(
        envelope.kind,
        envelope.name,
        payload,
        envelope.sender,
        envelope.id,
        dict(envelope.headers) if envelope.headers else {},
        envelope.correlation_id,
        envelope.reply_to,
        envelope.sent_at,
        envelope.attempt,
    )

"""Consuming a queue's dead letters: ``@consumer(queues.calc.dead)``.

The handler gets each :class:`~microhive.broker.DeadLetter` — its reason, attempts and the
original envelope, or the raw bytes when it never decoded. One that was handled is removed
from the dead letters (through the engine's ``purge`` of exactly that letter); one whose
handler fails stays where it is and is handed out again later: a dead letter is never lost,
and never dead-lettered a second time. Works on every engine that lists and purges dead
letters; new ones are found by reading the store, every ``poll`` s when idle (up to
``poll_max``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque

from .broker import Consumer, DeadLetter, Delivery, QueueBroker
from .deadletters import Selection, identity
from .envelope import Envelope, Kind, new_id
from .errors import ConsumerClosed

log = logging.getLogger("microhive.broker")


class DeadLetterDelivery(Delivery):
    """One dead letter handed to a ``@consumer(queue.dead)`` handler (as its payload).

    Acknowledged: removed from the dead letters. Failed, released or "dead-lettered": it stays
    where it is and is handed out again later — a dead letter is never lost, nor dead-lettered
    a second time.
    """

    __slots__ = ("consumer", "letter")

    def __init__(self, consumer: DeadLetterConsumer, letter: DeadLetter) -> None:
        envelope = Envelope(
            Kind.MESSAGE,
            consumer.source,
            letter,
            "",
            letter.envelope.id if letter.envelope is not None else new_id(),
            {"x-dead-reason": letter.reason},
            attempt=consumer.attempts.get(identity(letter), 0) + 1,
        )
        super().__init__(letter.raw, envelope)
        self.consumer = consumer
        self.letter = letter

    async def ack(self) -> None:
        if self._settle():
            await self.consumer.remove(self.letter)

    async def retry(self, delay: float, reason: str) -> None:
        if self._settle():
            self.consumer.later(self.letter, delay)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            log.warning("a dead letter's handler failed (%s): it stays in the dead letters", reason)
            self.consumer.later(self.letter, self.consumer.poll_max)

    async def release(self) -> None:
        if self._settle():
            self.consumer.later(self.letter, 0.0)


class DeadLetterConsumer(Consumer):
    """Hands out the dead letters of ``source`` one by one, as they appear (the dead-letter
    store is read every ``poll`` seconds while it has nothing new, up to ``poll_max``)."""

    poll = 0.2
    poll_max = 5.0

    def __init__(self, broker: QueueBroker, source: str, prefetch: int) -> None:
        self.broker = broker
        self.source = source
        self.prefetch = prefetch
        self.closed = False
        self.buffer: deque[DeadLetter] = deque()
        self.in_hand: set[tuple[float, str, bytes]] = set()
        self.not_before: dict[tuple[float, str, bytes], float] = {}
        self.attempts: dict[tuple[float, str, bytes], int] = {}
        self.woken = asyncio.Event()

    async def get(self) -> Delivery:
        pause = self.poll
        while True:
            if self.closed:
                raise ConsumerClosed(self.source)
            while self.buffer:
                letter = self.buffer.popleft()
                key = identity(letter)
                if key not in self.in_hand:
                    self.in_hand.add(key)
                    return DeadLetterDelivery(self, letter)
            if await self._fill():
                pause = self.poll
                continue
            self.woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self.woken.wait()
            pause = min(pause * 2, self.poll_max)

    async def _fill(self) -> bool:
        """Read the oldest letters that are neither in a handler nor waiting to be retried."""
        now = time.monotonic()
        waiting = sum(1 for due in self.not_before.values() if due > now)
        letters = await self.broker.dead_letters(
            self.source, self.prefetch + len(self.in_hand) + waiting
        )
        for letter in letters:
            key = identity(letter)
            if key in self.in_hand or self.not_before.get(key, 0.0) > now:
                continue
            self.not_before.pop(key, None)
            self.buffer.append(letter)
        return bool(self.buffer)

    async def remove(self, letter: DeadLetter) -> None:
        key = identity(letter)
        try:
            await self.broker._purge(self.source, Selection(only=frozenset({key})))
        finally:
            self.in_hand.discard(key)
            self.attempts.pop(key, None)

    def later(self, letter: DeadLetter, delay: float) -> None:
        key = identity(letter)
        self.in_hand.discard(key)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        self.not_before[key] = time.monotonic() + delay

    async def close(self) -> None:
        self.closed = True
        self.buffer.clear()
        self.woken.set()

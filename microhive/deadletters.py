"""Working with a queue's dead letters: choose some, send them back, or drop them.

``broker.<queue>.dead`` is a :class:`DeadLetterHandle`: ``list()``, ``requeue(...)`` and
``purge(...)``, each taking the same filters (a :class:`Selection`). A requeue publishes each
chosen message again *before* removing it from the dead letters, on every engine, so a crash
in the middle leaves a duplicate at most, never a loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .codecs import Codec
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .broker import DeadLetter, QueueBroker
    from .declarations import Queue


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters an operation takes: those whose reason contains ``reason``, that
    died more than ``older_than`` seconds ago, oldest first, at most ``limit`` of them."""

    reason: str | None = None
    older_than: float | None = None
    limit: int | None = None
    only: frozenset[tuple[float, str, bytes]] | None = None
    """Exactly these letters (by :func:`identity`): what a dead-letter consumer settles."""

    def __post_init__(self) -> None:
        if self.reason is not None and not isinstance(self.reason, str):
            raise ConfigurationError("reason= must be a string (a part of the reason)")
        if self.older_than is not None and (
            not isinstance(self.older_than, int | float)
            or not math.isfinite(self.older_than)
            or self.older_than < 0
        ):
            raise ConfigurationError("older_than= must be a number of seconds >= 0")
        if self.limit is not None and (
            not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 0
        ):
            raise ConfigurationError("limit= must be an integer >= 0")

    def matches(self, letter: DeadLetter, now: float | None = None) -> bool:
        if self.only is not None and identity(letter) not in self.only:
            return False
        if self.reason is not None and self.reason not in letter.reason:
            return False
        if self.older_than is not None:
            now = time.time() if now is None else now
            if now - letter.dead_at < self.older_than:
                return False
        return True

    def choose(self, letters: list[DeadLetter]) -> list[DeadLetter]:
        """The matching letters of ``letters`` (oldest first), at most ``limit``."""
        now = time.time()
        chosen = [letter for letter in letters if self.matches(letter, now)]
        return chosen if self.limit is None else chosen[: self.limit]


def identity(letter: DeadLetter) -> tuple[float, str, bytes]:
    """What tells one dead letter from another on every engine: when and why it died, and
    its bytes."""
    return (letter.dead_at, letter.reason, letter.raw)


def picked(letters: Iterable[DeadLetter] | None) -> frozenset[tuple[float, str, bytes]] | None:
    """The ``only`` of a :class:`Selection` for exactly ``letters`` (None: no such filter)."""
    return None if letters is None else frozenset(identity(letter) for letter in letters)


def requeued(codec: Codec, letter: DeadLetter, queue: str) -> bytes:
    """What a requeue publishes for ``letter``: its message as a first attempt again, with
    the reason it died in the header ``x-requeued`` — or its raw bytes, if it never decoded
    (once the producer or the consumer was fixed, they may decode now)."""
    envelope = letter.envelope
    if envelope is None:
        return letter.raw
    headers = {
        key: value
        for key, value in envelope.headers.items()
        if key not in ("x-last-error", "x-requeued")
    }
    headers["x-requeued"] = letter.reason
    return codec.encode(replace(envelope, headers=headers, attempt=1, name=queue))


class DeadLetterHandle:
    """``broker.<queue>.dead``: the dead letters of one queue."""

    __slots__ = ("broker", "queue")

    def __init__(self, broker: QueueBroker, queue: Queue) -> None:
        self.broker = broker
        self.queue = queue

    async def list(self, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters (as ``dead_letters()``)."""
        return await self.broker.dead_letters(self.queue, limit)

    async def requeue(
        self,
        *,
        to: Queue | str | None = None,
        reason: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        letters: Iterable[DeadLetter] | None = None,
    ) -> int:
        """Send the chosen dead letters back (to ``to``, default this queue) as first
        attempts; returns how many. See :meth:`QueueBroker.requeue`."""
        return await self.broker.requeue(
            self.queue, to=to, reason=reason, older_than=older_than, limit=limit, letters=letters
        )

    async def purge(
        self,
        *,
        reason: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        letters: Iterable[DeadLetter] | None = None,
    ) -> int:
        """Delete the chosen dead letters for good (``letters``: exactly these); returns how
        many."""
        return await self.broker.purge(
            self.queue, reason=reason, older_than=older_than, limit=limit, letters=letters
        )

    def __repr__(self) -> str:
        return f"<DeadLetterHandle {self.queue.name!r} on {self.broker!r}>"

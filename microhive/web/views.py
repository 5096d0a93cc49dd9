"""Live views of a queue that any thread may read: a tail (the last N envelopes) and the
latest envelope per key.

A web page's callbacks run in the server's threads, not in the agents' event loop; each view
is filled by one task in that loop (:func:`follow`) and read under a lock, so a callback gets
a consistent copy and never touches asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..envelope import Envelope
from ..transports.links import RECONNECT

log = logging.getLogger("microhive.web")

Source = Callable[[int], AsyncIterator[Envelope]]
"""Opens ``broker.tail(...)`` replaying the last ``n`` messages (``n`` given)."""


class View:
    """What every view shares: a lock, a count of envelopes seen, and a way to wait for it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._received = 0
        self._updated: float | None = None  # time.monotonic() of the newest envelope

    @property
    def received(self) -> int:
        """How many envelopes the view took in since it opened (replayed ones included)."""
        with self._changed:
            return self._received

    @property
    def updated(self) -> float | None:
        """``time.monotonic()`` when the view last took in an envelope (None: never)."""
        with self._changed:
            return self._updated

    def wait(self, count: int = 1, timeout: float | None = None) -> bool:
        """Block until the view took in at least ``count`` envelopes; False at the timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._received >= count, timeout)

    def seen(self, envelope_id: str) -> bool:
        """Whether the view holds this envelope (a reopened tail replays what it has)."""
        return False

    def add(self, envelope: Envelope) -> None:
        """Take in one envelope (called in the event loop by :func:`follow`)."""
        with self._changed:
            self._take(envelope)
            self._received += 1
            self._updated = time.monotonic()
            self._changed.notify_all()

    def _take(self, envelope: Envelope) -> None:
        raise NotImplementedError


class Tail(View):
    """The last ``size`` envelopes of a queue (of one key, if given), oldest first, kept
    following new ones. Read it from any thread."""

    def __init__(self, queue: str, size: int, key: str | None = None) -> None:
        super().__init__()
        self.queue, self.size, self.key = queue, size, key
        self._items: deque[Envelope] = deque(maxlen=size)
        self._ids: set[str] = set()

    def __repr__(self) -> str:
        key = "" if self.key is None else f" key={self.key!r}"
        return f"<Tail {self.queue!r} last={self.size}{key}: {len(self)} held>"

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def envelopes(self) -> list[Envelope]:
        """A copy of the envelopes held, oldest first."""
        with self._changed:
            return list(self._items)

    def payloads(self) -> list[Any]:
        """A copy of the payloads held, oldest first."""
        with self._changed:
            return [envelope.payload for envelope in self._items]

    @property
    def latest(self) -> Envelope | None:
        """The newest envelope held, or None."""
        with self._changed:
            return self._items[-1] if self._items else None

    def seen(self, envelope_id: str) -> bool:
        with self._changed:
            return envelope_id in self._ids

    def _take(self, envelope: Envelope) -> None:
        if len(self._items) == self.size:
            self._ids.discard(self._items[0].id)
        self._items.append(envelope)
        self._ids.add(envelope.id)


class Latest(View):
    """The newest envelope of each key of a queue (``send(..., key=)``): the current value of
    every sensor, satellite or account. Messages sent without a key are kept under ``""``."""

    def __init__(self, queue: str, last: int) -> None:
        super().__init__()
        self.queue, self.last = queue, last
        self._by_key: dict[str, Envelope] = {}

    def __repr__(self) -> str:
        return f"<Latest {self.queue!r}: {len(self)} key(s)>"

    def __len__(self) -> int:
        with self._changed:
            return len(self._by_key)

    def get(self, key: str) -> Envelope | None:
        """The newest envelope sent with ``key``, or None."""
        with self._changed:
            return self._by_key.get(key)

    def items(self) -> dict[str, Envelope]:
        """A copy: key → newest envelope."""
        with self._changed:
            return dict(self._by_key)

    def seen(self, envelope_id: str) -> bool:
        with self._changed:
            return any(envelope.id == envelope_id for envelope in self._by_key.values())

    def _take(self, envelope: Envelope) -> None:
        key = envelope.headers.get("x-key", "")
        held = self._by_key.get(key)
        if held is None or held.sent_at <= envelope.sent_at:
            self._by_key[key] = envelope


async def follow(view: View, source: Source, replay: int) -> None:
    """Fill ``view`` from a tail until the broker closes it; reopen the tail after a failure
    (replaying ``replay`` messages again, skipping those the view already holds), so a page
    keeps its data while an engine restarts."""
    failures = 0
    while True:
        try:
            async for envelope in source(replay):
                failures = 0
                if not view.seen(envelope.id):
                    view.add(envelope)
            return  # the broker closed: the hive is stopping
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            delay = RECONNECT.delay(failures)
            log.warning("%r: the tail failed (%s); reopening in %.1f s", view, exc, delay)
            await asyncio.sleep(delay)

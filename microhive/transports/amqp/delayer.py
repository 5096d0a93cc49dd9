"""Delay queues: where a delayed send or a retry waits, on disk, until it is due.

``jobs:delay:<ms>`` (one per delay, rounded up to two significant digits by
:func:`.options.delay_bucket`) has ``x-message-ttl: <ms>`` and dead-letters back into
``jobs`` through the default exchange when the TTL expires. It survives restarts of the
consumer and of RabbitMQ, and deletes itself after :data:`DELAY_EXPIRES` without use.
"""

from __future__ import annotations

import time

from .options import AmqpOptions, delay_bucket
from .topology import Topology

DELAY_EXPIRES = 3_600_000
"""A delay queue deletes itself when unused this long (ms) after its TTL; it is re-declared
(which renews the lease) at least every :data:`DELAY_REFRESH` seconds while in use."""

DELAY_REFRESH = 1800.0


class Delayer:
    """The delay queues of one broker: declared when first used, counted by ``length()``."""

    def __init__(self, options: AmqpOptions, topology: Topology) -> None:
        self.options = options
        self.topology = topology
        self._used: dict[str, dict[int, float]] = {}  # queue -> delay (ms) -> declared at
        self._declared: dict[str, tuple[int, float]] = {}  # name -> (generation, monotonic)

    async def route(self, queue: str, delay: float) -> str:
        """The routing key (a delay queue's name) that makes a message reach ``queue`` after
        ``delay`` seconds, rounded up; the delay queue is declared first."""
        milliseconds = delay_bucket(delay)
        name = self.options.delay(queue, milliseconds)
        link = self.topology.link
        now = time.monotonic()
        declared = self._declared.get(name)
        if declared is None or declared[0] != link.generation or now - declared[1] > DELAY_REFRESH:
            generation = link.generation
            channel = await link.rpc()
            try:
                await channel.queue_declare(
                    name,
                    durable=True,
                    arguments={
                        "x-message-ttl": milliseconds,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": self.topology.name(queue),
                        "x-expires": milliseconds + DELAY_EXPIRES,
                    },
                )
            except Exception as exc:
                raise link.translate(exc) from exc
            self._declared[name] = (generation, now)
            self._used.setdefault(queue, {})[milliseconds] = now
        return name

    async def waiting(self, queue: str) -> int:
        """Messages waiting in the delay queues of ``queue`` this process used."""
        total = 0
        delays = self._used.get(queue, {})
        for milliseconds in list(delays):
            count = await self.topology.count(self.options.delay(queue, milliseconds))
            if count is None:
                delays.pop(milliseconds, None)
            else:
                total += count
        return total

"""The delayer: moves due delayed sends and retries into the stream, and trims it.

Delayed sends wait in the sorted set ``<queue>:delayed``, delayed retries in
``<queue>:retry:<group>`` (score: due time, Unix ms, server clock). One :class:`Mover`
per (queue, group) in each consuming process runs the Lua script ``MOVE``, which adds what
is due to the stream and removes it from the set atomically, so two movers never duplicate.
It runs when something sent from this process falls due and every ``delay_poll`` for what
others scheduled; every ``trim_interval`` it also trims the stream (:mod:`.scripts`, TRIM).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ...errors import TransportError
from ..links import RECONNECT
from .commands import Commands
from .scripts import MOVE, TRIM
from .wire import QueueKeys

log = logging.getLogger("microhive.redis")

MOVE_BATCH = 500


class Mover:
    """Moves due delayed messages and retries of one group into the stream; trims it."""

    def __init__(
        self, commands: Commands, queue: str, keys: QueueKeys, group: str, *, trim: bool = True
    ) -> None:
        self.commands = commands
        self.trim = trim  # not on a stream of the program's (``Queue(address=...)``)
        self.queue = queue
        self.group = group
        self.users = 0  # consumers of this (queue, group) in this broker
        self.keys = keys
        self.retries = commands.options.retries(queue, group)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"microhive.redis.mover.{self.queue}.{self.group}"
        )

    def wake_in(self, delay: float) -> None:
        """Run at least once more in ``delay`` seconds (something local falls due then).

        One timer is enough, for the earliest: each run learns from Redis when the next
        message is due."""
        loop = asyncio.get_running_loop()
        when = loop.time() + delay + 0.001
        timer = self._timer
        if timer is not None and loop.time() <= timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(when, self.wake.set)

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        commands = self.commands
        options = commands.options
        loop = asyncio.get_running_loop()
        next_trim = loop.time() + options.trim_interval
        failures = 0
        while True:
            self.wake.clear()
            wait = options.delay_poll
            try:
                moved, due_in = await commands.script(
                    MOVE,
                    (self.keys.stream, self.keys.delayed, self.retries),
                    (MOVE_BATCH, self.group, options.maxlen),
                )
                failures = 0
                if moved >= MOVE_BATCH:
                    wait = 0
                elif due_in >= 0:
                    wait = min(wait, due_in / 1000)
                if self.trim and options.trim_interval > 0 and loop.time() >= next_trim:
                    next_trim = loop.time() + options.trim_interval
                    await commands.script(TRIM, (self.keys.stream,), ())
            except TransportError as exc:
                failures += 1
                if failures == 1:
                    log.warning("mover of %r: %s", self.queue, exc)
                wait = RECONNECT.delay(failures)
            except Exception:  # never end the loop
                failures += 1
                log.exception("mover of %r failed", self.queue)
                wait = RECONNECT.delay(failures)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self.wake.wait()

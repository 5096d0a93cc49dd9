"""Waking the callers that wait for results: one pub/sub connection per store.

Why pub/sub and not ``BLPOP`` on a per-job list: a blocked ``BLPOP`` holds a connection per
waiting caller (a process waiting for 1,000 results would need 1,000 connections), and a
list element wakes one waiter where several may wait for one job. A ``SUBSCRIBE`` costs
nothing to hold, one connection carries every job this process waits for, and the final
transition publishes in the same Lua step that writes the record.

Subscribing is off the wire when nothing else is: a ``SUBSCRIBE`` asked for while another
is being sent goes out with the others of that turn in one command, and every
``UNSUBSCRIBE`` is batched that way (it is never awaited by a waiter).

Pub/sub delivers at most once, so two gaps are closed by the waiter, not by luck:

- the record may turn final before the subscription is in place: :meth:`Wakeups.listen`
  returns only once Redis confirmed the ``SUBSCRIBE``, and the waiter reads the record
  after that (a final write before it is seen by the read, one after it is published to us);
- a lost connection loses what was published meanwhile: every waiter is told to read its
  record again (:data:`RECHECK`) once the new connection has subscribed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from ...transports.links import RECONNECT

log = logging.getLogger("microhive.tasks")

RECHECK: Final = b""
"""What a waiter's future gets after a reconnect: read the record again (never a record)."""


class Wakeups:
    """Futures waiting on channels, fed by one subscription that reconnects by itself."""

    def __init__(self, client: Any, describe: str) -> None:
        self._client = client  # redis-py's asyncio client on a pool without socket timeout
        self._describe = describe
        self._waiting: dict[bytes, set[asyncio.Future[bytes]]] = {}
        self._unconfirmed: dict[bytes, int] = {}  # SUBSCRIBEs sent, not yet confirmed
        self._confirmed: dict[bytes, asyncio.Event] = {}
        self._pubsub: Any = None
        # SUBSCRIBEs and UNSUBSCRIBEs asked for in one turn of the loop go out together
        self._to_subscribe: set[bytes] = set()
        self._to_unsubscribe: set[bytes] = set()
        self._flushing: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def listen(self, channel: bytes) -> asyncio.Future[bytes]:
        """A future for the next message on ``channel``, returned once subscribed (confirmed
        by Redis); :meth:`forget` it when done."""
        if self._closed:
            raise RuntimeError("the result store is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="microhive result wake-ups")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(channel, set())
        waiting.add(future)
        try:
            if len(waiting) == 1:
                self._confirmed[channel] = asyncio.Event()
                if self._connected.is_set() and self._flushing is None:
                    with contextlib.suppress(Exception):  # the reader reconnects and resubscribes
                        await self._subscribe(channel)  # alone: no wait for the next turn
                elif self._connected.is_set():
                    self._to_subscribe.add(channel)  # with the others of this turn
            await self._confirmed[channel].wait()
        except BaseException:
            self.forget(channel, future)
            raise
        return future

    def forget(self, channel: bytes, future: asyncio.Future[bytes]) -> None:
        waiting = self._waiting.get(channel)
        if waiting is None:
            return
        waiting.discard(future)
        future.cancel()
        if waiting:
            return
        del self._waiting[channel]
        self._confirmed.pop(channel, None)
        self._to_subscribe.discard(channel)
        if self._connected.is_set() and self._pubsub is not None:
            self._to_unsubscribe.add(channel)
            self._schedule_flush()

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for waiting in self._waiting.values():
            for future in waiting:
                future.cancel()
        self._waiting.clear()

    # -- the connection --------------------------------------------------------------------

    async def _subscribe(self, *channels: bytes) -> None:
        for channel in channels:
            self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
        await self._pubsub.subscribe(*channels)

    def _schedule_flush(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
            self._flushing.add_done_callback(_quiet)

    async def _flush(self) -> None:
        """Send what this turn of the loop asked for: one UNSUBSCRIBE and one SUBSCRIBE for
        any number of jobs, instead of one round trip each."""
        try:
            while self._to_subscribe or self._to_unsubscribe:
                pubsub = self._pubsub
                # nobody came back meanwhile for the channels left
                leaving = [ch for ch in self._to_unsubscribe if ch not in self._waiting]
                joining = [ch for ch in self._to_subscribe if ch in self._waiting]
                self._to_unsubscribe.clear()
                self._to_subscribe.clear()
                if pubsub is None or not self._connected.is_set():
                    return  # the reader resubscribes every waiting channel when it is back
                # a failed send: the reader reconnects and resubscribes whoever waits
                with contextlib.suppress(Exception):
                    if leaving:
                        await pubsub.unsubscribe(*leaving)
                    if joining:
                        await self._subscribe(*joining)
        finally:
            self._flushing = None

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                await pubsub.connect()
                self._pubsub = pubsub
                self._unconfirmed.clear()
                if self._waiting:
                    await self._subscribe(*self._waiting)
                self._connected.set()
                if failures:
                    log.info("%s: result wake-ups connected again", self._describe)
                    failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "%s: result wake-ups lost (%s); reconnecting", self._describe, exc)
                self._connected.clear()
                self._recheck_all()
                await asyncio.sleep(RECONNECT.delay(failures))
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _deliver(self, message: dict[str, Any]) -> None:
        channel: bytes = message["channel"]
        kind = message["type"]
        if kind == "message":
            for future in self._waiting.get(channel, ()):
                if not future.done():
                    future.set_result(message["data"])
        elif kind == "subscribe":
            left = self._unconfirmed.pop(channel, 0) - 1
            if left > 0:  # a later SUBSCRIBE of the channel is still on its way
                self._unconfirmed[channel] = left
                return
            confirmed = self._confirmed.get(channel)
            if confirmed is not None:
                confirmed.set()

    def _recheck_all(self) -> None:
        """The connection is gone: whatever was published meanwhile is lost to us."""
        for channel, waiting in self._waiting.items():
            confirmed = self._confirmed.get(channel)
            if confirmed is None or confirmed.is_set():  # unset: a listen() awaits that one
                self._confirmed[channel] = asyncio.Event()
            for future in waiting:
                if not future.done():
                    future.set_result(RECHECK)


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # an unsubscribe lost with its connection: nothing to do

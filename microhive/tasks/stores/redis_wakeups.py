"""Waking the callers that wait for results: one pub/sub connection per store.

The subscription is one of the transport's own pipelined connections
(:class:`~microhive.transports.redis.link.Link` in subscriber mode: hiredis parsing, PINGs
when idle, Sentinel's master after a failover, reconnecting with backoff).

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

The same connection carries the store's :class:`~.redis_inbox.Inbox`, subscribed first on
every connection: the jobs a process submitted itself need no ``SUBSCRIBE`` of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from ...transports.redis.link import Link
from ...transports.redis.options import RedisOptions
from .redis_inbox import Inbox

log = logging.getLogger("microhive.tasks")

RECHECK: Final = b""
"""What a waiter's future gets after a reconnect: read the record again (never a record)."""


class Wakeups:
    """Futures waiting on channels, fed by one subscription that reconnects by itself."""

    def __init__(self, options: RedisOptions, describe: str, inbox: Inbox | None = None) -> None:
        self._options = options
        self._describe = describe
        self.inbox = inbox
        self._waiting: dict[bytes, set[asyncio.Future[bytes]]] = {}
        self._unconfirmed: dict[bytes, int] = {}  # SUBSCRIBEs sent, not yet confirmed
        self._confirmed: dict[bytes, asyncio.Event] = {}
        self._link: Link | None = None  # set while subscribed
        # SUBSCRIBEs and UNSUBSCRIBEs asked for in one turn of the loop go out together
        self._to_subscribe: set[bytes] = set()
        self._to_unsubscribe: set[bytes] = set()
        self._flush_scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def _start(self) -> None:
        if self._closed:
            raise RuntimeError("the result store is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="microhive result wake-ups")

    async def inbox_ready(self, timeout: float) -> bool:
        """Whether the inbox is subscribed (waiting up to ``timeout`` seconds for it)."""
        assert self.inbox is not None
        if self.inbox.ready.is_set():
            return True
        self._start()
        try:
            async with asyncio.timeout(timeout):
                await self.inbox.ready.wait()
        except TimeoutError:
            return False
        return True

    async def listen(self, channel: bytes) -> asyncio.Future[bytes]:
        """A future for the next message on ``channel``, returned once subscribed (confirmed
        by Redis); :meth:`forget` it when done."""
        self._start()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting = self._waiting.setdefault(channel, set())
        waiting.add(future)
        try:
            if len(waiting) == 1:
                self._confirmed[channel] = asyncio.Event()
                if self._link is not None:  # else: subscribed with the others on connecting
                    self._to_subscribe.add(channel)
                    self._schedule_flush()
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
        if self._link is not None:
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
        if self.inbox is not None:
            self.inbox.lost()

    # -- the connection --------------------------------------------------------------------

    def _subscribe(self, link: Link, channels: list[bytes]) -> None:
        inbox = self.inbox.channel if self.inbox is not None else None
        for channel in channels:
            if channel != inbox:  # the inbox's confirmation is the inbox's own
                self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
        link.send_nowait(b"SUBSCRIBE", *channels)

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send what this turn of the loop asked for: one UNSUBSCRIBE and one SUBSCRIBE for
        any number of jobs, instead of one command each."""
        self._flush_scheduled = False
        # nobody came back meanwhile for the channels leaving, nobody left those joining
        leaving = [ch for ch in self._to_unsubscribe if ch not in self._waiting]
        joining = [ch for ch in self._to_subscribe if ch in self._waiting]
        self._to_unsubscribe.clear()
        self._to_subscribe.clear()
        link = self._link
        if link is None:
            return  # every waiting channel is subscribed again on connecting
        # a failed send: the link is down, and on connecting again whoever waits subscribes
        with contextlib.suppress(Exception):
            if leaving:
                link.send_nowait(b"UNSUBSCRIBE", *leaving)
            if joining:
                self._subscribe(link, joining)

    async def _run(self) -> None:
        link = Link(self._options, "result wake-ups", on_push=self._on_push)
        connections = 0
        try:
            while True:
                await link.ensure()  # with backoff, for as long as it takes
                connections += 1
                if connections > 1:
                    log.info("%s: result wake-ups connected again", self._describe)
                self._unconfirmed.clear()
                channels = [self.inbox.channel] if self.inbox is not None else []
                channels += self._waiting
                with contextlib.suppress(Exception):  # down again at once: the next turn
                    self._subscribe(link, channels)
                self._link = link
                await link.wait_down()
                self._link = None
                log.warning("%s: result wake-ups lost; reconnecting", self._describe)
                if self.inbox is not None:
                    self.inbox.lost()
                self._recheck_all()
        finally:
            self._link = None
            await link.close()

    def _on_push(self, reply: Any) -> None:
        """Everything the subscription receives: messages, confirmations, PONGs."""
        if type(reply) is not list or len(reply) < 3:
            return
        kind, channel = reply[0], reply[1]
        inbox = self.inbox
        if inbox is not None and channel == inbox.channel:
            if kind == b"message":
                inbox.deliver(reply[2])
            elif kind == b"subscribe":
                inbox.subscribed()
            return
        if kind == b"message":
            for future in self._waiting.get(channel, ()):
                if not future.done():
                    future.set_result(reply[2])
        elif kind == b"subscribe":
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

"""A Redis connection that pipelines: many commands in flight, replies matched in order.

:func:`.dial.dial` opens the connection (redis-py's handshake: TCP, TLS or a Unix socket,
AUTH, SELECT, CLIENT SETNAME; the master named by Sentinel); after that a :class:`Link`
writes commands itself — every command issued during
one event-loop iteration goes out in one write — and one reader task parses the replies
with hiredis and resolves the callers' futures in order. That is what makes concurrent
sends, acks and signals cheap: no pool, no lock, no per-command round trip.

A link that breaks (reset, EOF, a reply later than ``timeout``) fails every command in
flight with :class:`LinkDown`; :meth:`Link.ensure` reconnects with capped exponential
backoff, in a loop. The owner decides what to resume (re-subscribe, re-read).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis

from ... import linkevents
from ..links import RECONNECT, LinkDown
from .dial import AuthError, ReplyError, dial, disconnect, pack
from .options import RedisOptions

log = logging.getLogger("microhive.redis")

__all__ = ["AuthError", "Link", "LinkDown", "ReplyError", "SharedLink", "pack"]

WRITE_HIGH_WATER = 4 * 1024 * 1024
"""Callers that do not wait for replies (signals) wait for the socket above this backlog."""


class Link:
    """One Redis connection with pipelined commands.

    ``on_push`` switches the link to subscriber mode: every reply goes to it (messages and
    (un)subscribe confirmations), and the link PINGs when idle to notice a dead server.
    """

    def __init__(
        self,
        options: RedisOptions,
        role: str,
        *,
        timeout: float | None = None,
        on_push: Callable[[Any], None] | None = None,
        ping_interval: float = 5.0,
    ) -> None:
        self.options = options
        self.role = role
        self.timeout = options.command_timeout if timeout is None else timeout
        self.on_push = on_push
        self.ping_interval = ping_interval
        self.generation = 0  # one more after each successful connect
        self.client_id: int | None = None
        self.closed = False
        self._conn: Any = None
        self._writer: asyncio.StreamWriter | None = None
        self._waiting: deque[asyncio.Future[Any] | None] = deque()
        self._out: list[bytes | Callable[[], bytes]] = []
        self._flush_scheduled = False
        self._progress = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._connecting = asyncio.Lock()
        self._down = asyncio.Event()
        self._down.set()
        self._sent = 0  # commands queued (that get a reply), ever
        self._received = 0  # replies read, ever
        self._answered = asyncio.Event()  # set after replies were read, while settle() waits
        self._break_reason: BaseException | None = None
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        state = "up" if self.up else "down"
        return f"<Link {self.role} {self.options.safe_url} {state}>"

    @property
    def up(self) -> bool:
        return self._writer is not None

    # -- connecting ----------------------------------------------------------------------

    async def open(self) -> None:
        """One connection attempt; :class:`LinkDown` or :class:`AuthError` when it fails."""
        if self.closed:
            raise LinkDown(f"{self.role}: connection to {self.options.safe_url} was closed")
        dialed = await dial(self.options, self._describe, self.timeout)
        self._conn = dialed.conn
        self._writer = dialed.writer
        self.client_id = dialed.client_id
        self._break_reason = None
        self._progress = self._loop.time()
        self.generation += 1
        self._down.clear()
        linkevents.restored(self)
        self._tasks = [
            self._loop.create_task(
                self._read(dialed.reader), name=f"microhive.redis.{self.role}.reader"
            ),
            self._loop.create_task(self._watch(), name=f"microhive.redis.{self.role}.watchdog"),
        ]

    async def ensure(self, deadline: float | None = None) -> None:
        """Return once connected, reconnecting with capped exponential backoff until
        ``deadline`` (a loop time; ``None``: keep trying). Refused credentials raise at once."""
        if self._writer is not None:
            return
        async with self._connecting:
            attempt = 0
            started = self._loop.time()
            while self._writer is None:
                try:
                    await self.open()
                except LinkDown as exc:
                    attempt += 1
                    if self.closed or (deadline is not None and self._loop.time() >= deadline):
                        raise
                    if attempt == 1:
                        log.warning("%s; retrying", exc)
                    else:
                        log.debug("attempt %d: %s", attempt, exc)
                    delay = RECONNECT.delay(attempt)
                    if deadline is not None:
                        delay = max(0.0, min(delay, deadline - self._loop.time()))
                    await asyncio.sleep(delay)
            if attempt or self.generation > 1:
                log.info(
                    "%s: connected to %s again (%.2f s of retrying)",
                    self.role,
                    self.options.safe_url,
                    self._loop.time() - started,
                )

    async def wait_down(self) -> None:
        """Return once the connection is lost (or closed)."""
        await self._down.wait()

    def _describe(self, what: str, exc: BaseException) -> str:
        text = str(exc) or type(exc).__name__
        password = self.options.connection.get("password")
        if password:
            text = text.replace(str(password), "***")
        return f"{self.role}: {what} {self.options.safe_url}: {text}"

    # -- commands ------------------------------------------------------------------------

    def send(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; the future gets its reply, ReplyError or LinkDown."""
        if self._writer is None:
            raise LinkDown(f"{self.role}: not connected to {self.options.safe_url}")
        future = self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
        self._waiting.append(future)
        self._sent += 1
        self._out.append(pack(args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def send_lazy(self, pack: Callable[[], bytes]) -> asyncio.Future[Any]:
        """Take a place in line now; ``pack()`` makes the command when it is written (in
        this event-loop iteration's write). Lets callers add to a command — more ids to one
        XACK — until it goes out, while keeping its place before later commands."""
        if self._writer is None:
            raise LinkDown(f"{self.role}: not connected to {self.options.safe_url}")
        future = self._loop.create_future()
        if not self._waiting:
            self._progress = self._loop.time()
        self._waiting.append(future)
        self._sent += 1
        self._out.append(pack)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return future

    def send_nowait(self, *args: Any) -> None:
        """Queue one command whose reply nobody waits for (PUBLISH of a signal)."""
        if self._writer is None:
            raise LinkDown(f"{self.role}: not connected to {self.options.safe_url}")
        if self.on_push is None:
            if not self._waiting:
                self._progress = self._loop.time()
            self._waiting.append(None)
            self._sent += 1
        self._out.append(pack(args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def backlog(self) -> int:
        """Bytes written but not yet on the wire, plus commands not yet written."""
        writer = self._writer
        if writer is None:
            return 0
        return writer.transport.get_write_buffer_size() + len(self._out) * 64

    async def drain(self) -> None:
        """Wait until the socket takes more (backpressure for callers not awaiting replies)."""
        self._flush()
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await writer.drain()

    async def settle(self, timeout: float) -> None:
        """Wait (up to ``timeout``) until every command sent so far has been answered: what
        was sent without waiting (signals) has then reached the server. Later commands (of
        other users of a shared link) are not waited for."""
        self._flush()
        if self.on_push is not None:
            return
        target = self._sent
        loop = self._loop
        deadline = loop.time() + timeout
        while self._received < target and self._writer is not None and loop.time() < deadline:
            self._answered.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(deadline - loop.time()):
                    await self._answered.wait()

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out:
            return
        self._out = []
        writer = self._writer
        if writer is not None:
            writer.write(b"".join([item if isinstance(item, bytes) else item() for item in out]))

    # -- replies -------------------------------------------------------------------------

    async def _read(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=ReplyError)
        waiting = self._waiting
        push = self.on_push
        loop = self._loop
        failover = bool(self.options.sentinels)
        reason: BaseException | None = None
        torn_down = False  # cancelled without a break: closed, or the loop is going away
        try:
            while True:
                data = await reader.read(262144)
                if not data:
                    raise EOFError("connection closed by the server")
                self._progress = loop.time()
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if push is not None:
                        try:
                            push(reply)
                        except Exception:
                            log.exception("%s: handling a message failed", self.role)
                        continue
                    future = waiting.popleft()
                    self._received += 1
                    if future is None:
                        if isinstance(reply, ReplyError):
                            log.debug("%s: error reply ignored: %s", self.role, reply)
                    elif not future.done():
                        if isinstance(reply, ReplyError):
                            future.set_exception(reply)
                            if failover and reply.code == "READONLY":  # demoted: find the master
                                self._break(reply)
                        else:
                            future.set_result(reply)
                self._answered.set()
        except asyncio.CancelledError:
            reason = self._break_reason
            if reason is None:  # closed
                reason = LinkDown(f"{self.role}: connection closed")
                torn_down = True
        except Exception as exc:
            reason = exc
        finally:
            await self._lost(reason or LinkDown(f"{self.role}: connection closed"), torn_down)

    async def _watch(self) -> None:
        """Break the connection when replies stall; PING idle subscriber connections."""
        period = max(0.05, min(1.0, self.timeout / 4, self.ping_interval / 2))
        loop = self._loop
        while True:
            expected = loop.time() + period
            await asyncio.sleep(period)
            now = loop.time()
            if now - expected > period:
                continue  # the event loop itself stalled: let the reader catch up first
            idle = now - self._progress
            if self.on_push is not None:
                if idle > self.ping_interval + self.timeout:
                    self._break(TimeoutError(f"no reply for {idle:.1f} s"))
                    return
                if idle > self.ping_interval and self._writer is not None:
                    self.send_nowait(b"PING")
            elif self._waiting and idle > self.timeout:
                self._break(TimeoutError(f"no reply for {idle:.1f} s"))
                return

    def _break(self, reason: BaseException) -> None:
        self._break_reason = reason
        for task in self._tasks:
            if task.get_name().endswith(".reader"):
                task.cancel()

    async def _lost(self, reason: BaseException, torn_down: bool = False) -> None:
        conn, self._conn = self._conn, None
        self._writer = None
        self._out.clear()
        self._flush_scheduled = False
        error = LinkDown(self._describe("lost the connection to", reason))
        waiting = list(self._waiting)
        self._waiting.clear()
        self._received = self._sent  # all answered now, by the error
        self._answered.set()
        for future in waiting:
            if future is not None and not future.done():
                future.set_exception(error)
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        self._tasks = []
        self._down.set()
        if not self.closed:
            log.warning("%s", error)
            if not torn_down:
                linkevents.lost(self, "redis", self.role, self.options.safe_url)
        if conn is not None:
            await disconnect(conn)

    async def close(self) -> None:
        """Close for good: commands in flight fail with :class:`LinkDown`."""
        self.closed = True
        linkevents.closed(self)
        self._flush()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._conn is not None:
            await self._lost(LinkDown(f"{self.role}: connection closed"))


class SharedLink:
    """One pipelined connection for every broker of a process with the same URL.

    Besides saving connections, sharing keeps the order of commands across the brokers of
    one process: an acknowledgement made before a length query is counted by it.
    """

    _links: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, SharedLink]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, options: RedisOptions) -> None:
        self.link = Link(options, "broker")
        self.users = 0

    @classmethod
    async def acquire(cls, options: RedisOptions) -> Link:
        links = cls._links.setdefault(asyncio.get_running_loop(), {})
        shared = links.get(options.url)
        if shared is None or shared.link.closed:
            shared = links[options.url] = cls(options)
        shared.users += 1
        try:
            loop = asyncio.get_running_loop()
            await shared.link.ensure(loop.time() + options.connect_timeout)
        except BaseException:
            await cls.release(shared.link)
            raise
        return shared.link

    @classmethod
    async def release(cls, link: Link) -> None:
        links = cls._links.get(asyncio.get_running_loop(), {})
        shared = links.get(link.options.url)
        if shared is None or shared.link is not link:
            await link.close()
            return
        shared.users -= 1
        if shared.users <= 0:
            del links[link.options.url]
            await link.close()

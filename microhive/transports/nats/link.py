"""One nats-py connection with microhive's policies on top.

- ``open()`` keeps trying for ``connect_timeout`` seconds in all (pausing as
  :data:`~microhive.transports.links.RECONNECT` says between attempts), then raises
  :class:`LinkDown` naming the URL without its password or token; a refused login or an
  untrusted certificate fails at once. Once connected, nats-py reconnects by itself for ever
  (with a capped exponential pause where nats-py lets us choose it) and subscribes again.
- :meth:`Link.request_raw` multiplexes requests (JetStream publish acknowledgements and API
  calls) over one wildcard reply subscription: cheaper than nats-py's request machinery.
- A handler that raises never reaches nats-py's read loop (that would leave the connection
  deaf until a reconnect): the failure is logged with the subject and the message handed to
  the subscription's ``rescue`` (a queue consumer dead-letters it).
- Owners hear about disconnects and reconnects (:meth:`Link.watch`) to log the loss window of
  signals and to issue pull requests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ... import linkevents
from ...envelope import new_id
from ...errors import TransportError
from ..links import RECONNECT, LinkDown
from . import dial, internals
from .internals import Handler
from .options import NatsOptions
from .wire import MARKED, MARKED_BLOCK, Message

log = logging.getLogger("microhive.nats")

Listener = Callable[[], Awaitable[None] | None]
Rescue = Callable[[bytes, bytes, bytes, str], None]
"""Takes ``(subject, reply, data, reason)`` of a message whose handler raised."""


class Link:
    """A nats-py client, its request multiplexer, guarded handlers and reconnect notes."""

    def __init__(self, options: NatsOptions, role: str) -> None:
        self.options = options
        self.role = role
        self.client: Any = None
        self.closed = False
        self.lost_at: float | None = None  # wall time of the last disconnect
        self._down_since: float | None = None  # loop time of the last disconnect
        self._failures = 0
        self._slow = 0  # messages dropped because a subscription fell behind
        self.last_error = ""
        self._inbox = f"_INBOX.{new_id()}"
        self._inbox_len = len(self._inbox) + 1
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._counter = 0
        self._rescues: dict[int, Rescue | None] = {}  # sid -> what takes a failed message
        self.fast_publish: Callable[[bytes, bytes], bool] | None = None
        """``publish_now(subject, data)`` of the client where it has one: a ``PUB`` written
        without a coroutine, False when :meth:`publish` must do it (:mod:`.internals`)."""
        self.fast_block: Callable[[str, str, bytes, bytes], bool] | None = None
        """``publish_block_now(subject, reply, block, data)``: the same for an ``HPUB``."""
        self._on_down: list[Listener] = []
        self._on_up: list[Listener] = []
        self._up = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Link {self.role} {self.options.safe_url}>"

    @property
    def up(self) -> bool:
        client = self.client
        return client is not None and bool(client.is_connected)

    def describe(self, what: str, exc: BaseException | str) -> str:
        text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
        return f"{self.role}: {what} {self.options.safe_url}: {self.options.scrub(text)}"

    def watch(self, *, down: Listener | None = None, up: Listener | None = None) -> None:
        """Call ``down`` when the connection drops and ``up`` when it is back."""
        if down is not None:
            self._on_down.append(down)
        if up is not None:
            self._on_up.append(up)

    def unwatch(self, listener: Listener) -> None:
        for listeners in (self._on_down, self._on_up):
            if listener in listeners:
                listeners.remove(listener)

    # -- connecting ------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect within ``connect_timeout`` (retries included), else :class:`LinkDown`."""
        options = self.options
        budget = options.connect_timeout
        deadline = self._loop.time() + budget
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - self._loop.time()
            try:
                client = await self._attempt(remaining)
                break
            except dial.Final as final:
                raise LinkDown(self.describe(final.what, final.reason)) from None
            except dial.Failed as failed:
                pause = RECONNECT.delay(attempts)
                if self._loop.time() + pause >= deadline:
                    reason = f"{failed.reason} (tried for {budget:g} s)"
                    raise LinkDown(self.describe("cannot connect to", reason)) from None
                log.debug("%s; trying again", self.describe("connecting to", failed.reason))
                await asyncio.sleep(pause)
        # from now on nats-py reconnects by itself, for ever
        client.options["allow_reconnect"] = True
        client.options["max_reconnect_attempts"] = -1
        client.options["reconnect_time_wait"] = options.reconnect_wait
        self.client = client
        self.fast_publish = getattr(client, "publish_now", None)
        self.fast_block = getattr(client, "publish_block_now", None)
        self._up.set()
        try:
            await self.subscribe(f"{self._inbox}.*", self._on_reply)
        except Exception as exc:
            await self.close()
            raise LinkDown(self.describe("cannot subscribe on", exc)) from None

    async def _attempt(self, remaining: float) -> Any:
        """One nats-py ``connect()`` (each server tried twice), bounded by ``remaining``."""
        client_class = internals.client_class()
        client = client_class()
        if hasattr(client, "failed"):
            client.failed = self._failed
        callbacks: dict[str, Any] = {
            "error_cb": self._error,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
        }
        if internals.supports_reconnect_handler(client_class):
            callbacks["reconnect_to_server_handler"] = self._next_server
        self.last_error = ""
        await dial.attempt(
            client, dial.settings(self.options, self.role, remaining, callbacks), remaining, self
        )
        return client

    def _next_server(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """nats-py asks which server to try next and how long to wait first."""
        server = min(servers, key=lambda s: s.reconnects)
        pause = RECONNECT.delay(server.reconnects + 1)
        return server, min(pause, self.options.reconnect_wait)

    async def _error(self, exc: Exception) -> None:
        text = self.options.scrub(str(exc) or type(exc).__name__)
        if self.client is None and dial.is_auth(self.last_error) and not dial.is_auth(text):
            text = self.last_error  # over TLS a refusal is followed by a reset: keep the cause
        self.last_error = text
        if type(exc).__name__ == "SlowConsumerError":
            self._slow += 1
            if self._slow in (1, 10, 100, 1000) or self._slow % 10_000 == 0:
                log.error(
                    "%s on %s: a subscription fell behind; %d message(s) dropped so far",
                    self.role,
                    self.options.safe_url,
                    self._slow,
                )
            return
        if self.client is None:
            log.debug("%s", self.describe("connecting to", text))
            return
        self._failures += 1
        level = logging.WARNING if self._failures == 1 else logging.DEBUG
        log.log(level, "%s", self.describe("connection to", text))

    async def _disconnected(self) -> None:
        if self.client is None or self.closed:
            return
        self._up.clear()
        self.lost_at = time.time()
        self._down_since = self._loop.time()
        log.warning("%s: lost the connection to %s; reconnecting", self.role, self.options.safe_url)
        linkevents.lost(self, "nats", self.role, self.options.safe_url)
        # Requests waiting for an answer keep waiting (until their timeout): what nats-py had
        # not written yet goes out after the reconnect and is answered then; sending it again
        # now would store it twice.
        await self._notify(self._on_down)

    async def _reconnected(self) -> None:
        if self.closed:
            return
        away = self._loop.time() - self._down_since if self._down_since is not None else 0.0
        self._failures = 0
        self._up.set()
        linkevents.restored(self)
        log.info(
            "%s: connected to %s again (%.2f s of retrying)", self.role, self.options.safe_url, away
        )
        await self._notify(self._on_up)

    async def _notify(self, listeners: list[Listener]) -> None:
        for listener in list(listeners):
            try:
                result = listener()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s: a connection listener failed", self.role)

    def deadline(self, seconds: float) -> float:
        """The loop time ``seconds`` from now (for :meth:`wait_up`)."""
        return self._loop.time() + seconds

    async def wait_up(self, deadline: float | None = None) -> None:
        """Return once connected; :class:`LinkDown` after ``deadline`` (a loop time)."""
        if self.up:
            return
        if self.closed or self.client is None:
            raise LinkDown(f"{self.role}: connection to {self.options.safe_url} is closed")
        timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
        try:
            async with asyncio.timeout(timeout):
                while not self.up:
                    self._up.clear()
                    if self.up:
                        break
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.25):
                            await self._up.wait()
                    if self.closed:
                        raise LinkDown(f"{self.role}: connection closed")
        except TimeoutError:
            raise LinkDown(
                self.describe("no connection to", self.last_error or "still reconnecting")
            ) from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._up.set()
        linkevents.closed(self)
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(LinkDown(f"{self.role}: connection closed"))
        client, self.client = self.client, None
        self.fast_publish = None
        self.fast_block = None
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.options.request_timeout):
                    await self.barrier(client)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.options.request_timeout):
                    await client.close()

    # -- publishing and requests -----------------------------------------------------------

    async def barrier(self, client: Any | None = None) -> None:
        """Return once the server has processed everything sent so far (SUB and UNSUB
        included): the pending commands are written first, then a PING waits for its PONG
        (nats-py's ``flush()`` alone writes its PING ahead of them: docs/transports/nats.md)."""
        client = client if client is not None else self.require()
        timeout = max(1, int(self.options.request_timeout))
        await internals.flush_pending(client, timeout)
        await client.flush(timeout=timeout)

    def require(self) -> Any:
        client = self.client
        if client is None:
            raise LinkDown(f"{self.role}: not connected to {self.options.safe_url}")
        return client

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        reply: str = "",
    ) -> None:
        """Fire and forget (buffered by nats-py while it reconnects)."""
        try:
            await self.require().publish(subject, data, reply=reply, headers=headers)
        except TransportError:
            raise
        except Exception as exc:
            raise LinkDown(self.describe("cannot publish to", exc)) from None

    def expect(self) -> tuple[str, asyncio.Future[Any]]:
        """A reply subject of ours and the future its answer resolves; :meth:`forget` it."""
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting[token] = future
        return f"{self._inbox}.{token}", future

    def forget(self, reply: str) -> None:
        self._waiting.pop(reply[self._inbox_len :], None)

    async def request_raw(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Message:
        """Publish with a reply subject of ours; the answer message."""
        client = self.require()
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[Message] = self._loop.create_future()
        self._waiting[token] = future
        reply = f"{self._inbox}.{token}"
        try:
            try:
                fast = self.fast_block if headers is MARKED else None
                if fast is None or not fast(subject, reply, MARKED_BLOCK, data):
                    await client.publish(subject, data, reply=reply, headers=headers)
            except Exception as exc:
                raise LinkDown(self.describe("cannot publish to", exc)) from None
            try:
                async with asyncio.timeout(
                    self.options.request_timeout if timeout is None else timeout
                ):
                    return await future
            except TimeoutError:
                raise LinkDown(
                    self.describe("no answer within the request timeout from", subject)
                ) from None
        finally:
            self._waiting.pop(token, None)

    def _on_reply(
        self, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        future = self._waiting.pop(subject[self._inbox_len :].decode(), None)
        if future is not None and not future.done():
            future.set_result(Message(reply, data, headers))

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: Handler, rescue: Rescue | None = None) -> Any:
        """Subscribe ``handler`` to ``subject``; returns nats-py's subscription. nats-py
        subscribes again by itself after a reconnect. When ``handler`` raises, the failure
        is logged and the message goes to ``rescue`` (else it is dropped)."""
        client = self.require()
        task_of = asyncio.current_task

        async def fallback(msg: Any) -> None:  # also whatever arrives before the fast path
            subject, reply = msg.subject.encode(), msg.reply.encode()
            try:
                result = handler(subject, reply, msg.data, msg.headers)
                if result is not None:
                    await result
            except asyncio.CancelledError as exc:
                if internals.ours(task_of()):
                    raise
                self._handle_failure(rescue, subject, reply, msg.data, exc)
            except Exception as exc:
                self._handle_failure(rescue, subject, reply, msg.data, exc)

        subscription = await client.subscribe(
            subject, cb=fallback, pending_msgs_limit=0, pending_bytes_limit=0
        )
        direct = getattr(client, "direct", None)
        if direct is not None:
            sid = internals.sid_of(subscription)
            self._rescues[sid] = rescue
            direct[sid] = handler
        return subscription

    def _failed(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, exc: BaseException
    ) -> None:
        self._handle_failure(self._rescues.get(sid), subject, reply, data, exc)

    def _handle_failure(
        self, rescue: Rescue | None, subject: bytes, reply: bytes, data: bytes, exc: BaseException
    ) -> None:
        reason = self.options.scrub(f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc))
        name = subject.decode(errors="replace")
        fate = "handed on as bad input" if rescue is not None else "dropped"
        log.error(
            "%s: handling a message on %r failed (%d bytes): %s; %s",
            self.role,
            name,
            len(data),
            reason,
            fate,
            exc_info=exc,
        )
        if rescue is None:
            return
        try:
            rescue(subject, reply, data, reason)
        except Exception:
            log.exception("%s: the message on %r could not be handed on", self.role, name)

    async def unsubscribe(self, subscription: Any, *, drain: bool = False) -> None:
        """Stop a subscription. With ``drain``, the server is told first and answers a
        PING: what it sent before is still handled, nothing comes after."""
        client = self.client
        if client is None:
            return
        if drain and self.up:
            try:
                if await internals.send_unsubscribe(client, subscription):
                    await self.barrier(client)
            except Exception as exc:
                log.debug("%s: unsubscribing: %s", self.role, exc)
        direct = getattr(client, "direct", None)
        if direct is not None:
            sid = internals.sid_of(subscription)
            direct.pop(sid, None)
            self._rescues.pop(sid, None)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()

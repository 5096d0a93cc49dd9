"""One nats-py connection with microhive's policies on top.

- Connecting fails fast (each server tried twice) with an error that names the URL without
  its password or token; once connected, nats-py reconnects by itself for ever (with a
  capped exponential pause where nats-py lets us choose it) and subscribes again.
- :meth:`Connection.request` multiplexes requests (JetStream publish acknowledgements and
  API calls) over one wildcard reply subscription and decodes answers with orjson: cheaper
  than nats-py's JetStream layer, and requests fail at once when the connection drops
  instead of waiting for their timeout.
- Owners hear about disconnects and reconnects (:meth:`Connection.watch`) to log the loss
  window of signals and to issue pull requests again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from ...envelope import new_id
from ...errors import TransportError
from ...retry import Backoff
from .options import NatsOptions

log = logging.getLogger("microhive.nats")

RECONNECT = Backoff(initial=0.05, factor=2.0, maximum=2.0, jitter=0.2)
"""Pauses between reconnection attempts (and retries of sends): 50 ms doubling to a cap."""

STATUS = "Status"
DESCRIPTION = "Description"


class LinkError(TransportError):
    """The connection is down (or dropped while waiting); retried until ``retry_timeout``."""


class NoResponders(TransportError):
    """Nobody answers the subject: for JetStream, no stream (or consumer) is there."""


class ApiError(TransportError):
    """JetStream refused a request; ``code`` is the HTTP-like code, ``err_code`` its own."""

    def __init__(self, message: str, code: int = 0, err_code: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.err_code = err_code


Listener = Callable[[], Awaitable[None] | None]
Handler = Callable[[bytes, bytes, bytes, "dict[str, str] | None"], Awaitable[None] | None]
"""Receives ``(subject, reply, data, headers)`` of each message of a subscription."""


class Message:
    """A received message, as microhive needs it (lighter than nats-py's ``Msg``)."""

    __slots__ = ("data", "headers", "reply")

    def __init__(self, reply: bytes, data: bytes, headers: dict[str, str] | None) -> None:
        self.reply = reply
        self.data = data
        self.headers = headers


@functools.cache
def _client_class() -> Any:
    """nats-py's client, with messages of microhive's subscriptions handed straight to their
    handler from the reader (no ``Msg`` object, no queue, no task switch per message) when
    this nats-py's internals are the known ones; else nats-py's client as it is."""
    from nats.aio.client import Client

    try:
        known = list(inspect.signature(Client._process_msg).parameters) == [
            "self",
            "sid",
            "subject",
            "reply",
            "data",
            "headers",
        ] and hasattr(Client, "_process_headers")
    except (TypeError, ValueError, AttributeError):
        known = False
    if not known:
        return Client

    class DirectClient(Client):
        def __init__(self) -> None:
            super().__init__()
            self.direct: dict[int, Handler] = {}

        def publish_now(self, subject: bytes, payload: bytes) -> bool:
            """``PUB`` written to the pending buffer as ``publish()`` does, without its
            per-message checks (``subject`` is microhive's own, validated once) and without a
            coroutine. False when ``publish()`` must do it: not connected, too big, the buffer
            full, or this nats-py's internals not the known ones."""
            try:
                if self._status != Client.CONNECTED or len(payload) > self._max_payload:
                    return False
                flusher, queue = self._flusher_task, self._flush_queue
                if flusher is None or flusher.done() or queue is None:
                    return False
                command = b"PUB %b %d\r\n%b\r\n" % (subject, len(payload), payload)
                if self._pending_data_size + len(command) > self._max_pending_size:
                    return False
                self._pending.append(command)
                self._pending_data_size += len(command)
                self.stats["out_msgs"] += 1
                self.stats["out_bytes"] += len(payload)
                if queue.empty():  # wake the flusher, as publish() does
                    queue.put_nowait(asyncio.get_running_loop().create_future())
            except (AttributeError, TypeError, KeyError):
                return False
            return True

        async def _process_msg(
            self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
        ) -> None:
            handler = self.direct.get(sid)
            if handler is None:
                await super()._process_msg(sid, subject, reply, data, headers)
                return
            try:
                parsed = await self._process_headers(headers) if headers else None
            except Exception:  # a producer's block nats-py cannot read (not UTF-8): an
                parsed = _lenient_headers(headers)  # exception here would end its read loop
            result = handler(subject, reply, data, parsed)
            if result is not None:
                await result

    return DirectClient


def _lenient_headers(block: bytes) -> dict[str, str]:
    """The ``Name: value`` lines of a header block, bytes that are not UTF-8 replaced."""
    headers: dict[str, str] = {}
    for line in block.decode(errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip(), value.strip())
    return headers


class Connection:
    """A nats-py client, its request multiplexer and reconnect notifications."""

    def __init__(self, options: NatsOptions, role: str) -> None:
        self.options = options
        self.role = role
        self.client: Any = None
        self.closed = False
        self.lost_at: float | None = None  # wall time of the last disconnect
        self._down_since: float | None = None  # loop time of the last disconnect
        self._failures = 0
        self._slow = 0  # messages dropped because a subscription fell behind
        self._last_error = ""
        self._inbox = f"_INBOX.{new_id()}"
        self._inbox_len = len(self._inbox) + 1
        self._waiting: dict[str, asyncio.Future[Any]] = {}
        self._counter = 0
        self._on_down: list[Listener] = []
        self._on_up: list[Listener] = []
        self._up = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __repr__(self) -> str:
        return f"<Connection {self.role} {self.options.safe_url}>"

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
        """Connect; :class:`TransportError` (without secrets) when no server takes us."""
        options = self.options
        client_class = _client_class()
        client = client_class()
        kwargs: dict[str, Any] = {
            "servers": list(options.servers),
            "name": options.name or f"microhive {self.role}",
            "connect_timeout": options.connect_timeout,
            "reconnect_time_wait": 0.1,  # while connecting: each server twice, quickly
            "max_reconnect_attempts": 1,
            "allow_reconnect": False,
            "ping_interval": options.ping_interval,
            "max_outstanding_pings": 3,
            "error_cb": self._error,
            "disconnected_cb": self._disconnected,
            "reconnected_cb": self._reconnected,
            "pending_size": 8 * 1024 * 1024,
            "dont_randomize": True,
        }
        if options.tls:
            try:
                kwargs["tls"] = options.ssl_context()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                raise TransportError(self.describe("cannot load the TLS files for", exc)) from None
            if options.tls_hostname:
                kwargs["tls_hostname"] = options.tls_hostname
        if options.user is not None:
            kwargs["user"] = options.user
            kwargs["password"] = options.password
        if options.token is not None:
            kwargs["token"] = options.token
        if options.creds:
            kwargs["user_credentials"] = options.creds
        if options.nkey:
            kwargs["nkeys_seed"] = options.nkey
        if _supports_reconnect_handler(client_class):
            kwargs["reconnect_to_server_handler"] = self._next_server
        self._last_error = ""
        # each server is tried twice; nats-py can hang after some TLS failures: a deadline
        budget = 2 * len(options.servers) * (options.connect_timeout + 0.2) + 1.0
        try:
            async with asyncio.timeout(budget):
                await client.connect(**kwargs)
        except asyncio.CancelledError:
            await _abandon(client)
            raise
        except Exception as exc:
            await _abandon(client)
            reason = self._last_error or str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError) and not self._last_error:
                reason = f"no answer within {budget:.0f} s"
            what = "cannot authenticate to" if _is_auth(reason) else "cannot connect to"
            raise TransportError(self.describe(what, reason)) from None
        # from now on nats-py reconnects by itself, for ever
        client.options["allow_reconnect"] = True
        client.options["max_reconnect_attempts"] = -1
        client.options["reconnect_time_wait"] = options.reconnect_wait
        self.client = client
        self._up.set()
        try:
            await self.subscribe(f"{self._inbox}.*", self._on_reply)
        except Exception as exc:
            await self.close()
            raise TransportError(self.describe("cannot subscribe on", exc)) from None

    def _next_server(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """nats-py asks which server to try next and how long to wait first."""
        server = min(servers, key=lambda s: s.reconnects)
        pause = RECONNECT.delay(server.reconnects + 1)
        return server, min(pause, self.options.reconnect_wait)

    async def _error(self, exc: Exception) -> None:
        text = self.options.scrub(str(exc) or type(exc).__name__)
        if self.client is None and _is_auth(self._last_error) and not _is_auth(text):
            text = self._last_error  # over TLS a refusal is followed by a reset: keep the cause
        self._last_error = text
        name = type(exc).__name__
        if name == "SlowConsumerError":
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
        if self._failures == 1:
            log.warning("%s", self.describe("connection to", text))
        else:
            log.debug("%s", self.describe("connection to", text))

    async def _disconnected(self) -> None:
        if self.client is None or self.closed:
            return
        self._up.clear()
        self.lost_at = time.time()
        self._down_since = self._loop.time()
        log.warning("%s: lost the connection to %s; reconnecting", self.role, self.options.safe_url)
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
        log.info(
            "%s: connected to %s again (%.2f s of retrying)",
            self.role,
            self.options.safe_url,
            away,
        )
        await self._notify(self._on_up)

    async def _notify(self, listeners: list[Listener]) -> None:
        for listener in listeners:
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
        """Return once connected; :class:`LinkError` after ``deadline`` (a loop time)."""
        if self.up:
            return
        if self.closed or self.client is None:
            raise LinkError(f"{self.role}: connection to {self.options.safe_url} is closed")
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
                        raise LinkError(f"{self.role}: connection closed")
        except TimeoutError:
            raise LinkError(
                self.describe("no connection to", self._last_error or "still reconnecting")
            ) from None

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._up.set()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(LinkError(f"{self.role}: connection closed"))
        client, self.client = self.client, None
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
        included): the pending commands are written first, then a PING waits for its PONG.

        nats-py's ``flush()`` alone is not that: it writes its PING straight to the socket,
        ahead of commands still waiting in its pending buffer, so a PONG could come back
        before a SUB had even been sent (a subscription "confirmed" that then missed the
        first messages published to it).
        """
        client = client if client is not None else self.require()
        timeout = max(1, int(self.options.request_timeout))
        flush_pending = getattr(client, "_flush_pending", None)
        if flush_pending is not None and client.is_connected:
            try:
                async with asyncio.timeout(timeout):
                    await flush_pending(force_flush=True)
            except TypeError:  # another nats-py: its flush() is all there is
                pass
        await client.flush(timeout=timeout)

    def require(self) -> Any:
        client = self.client
        if client is None:
            raise LinkError(f"{self.role}: not connected to {self.options.safe_url}")
        return client

    async def publish(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Fire and forget (buffered by nats-py while it reconnects)."""
        try:
            await self.require().publish(subject, data, headers=headers)
        except TransportError:
            raise
        except Exception as exc:
            raise LinkError(self.describe("cannot publish to", exc)) from None

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
    ) -> Any:
        """Publish with a reply subject of ours; the answer message (a nats-py ``Msg``)."""
        client = self.require()
        self._counter += 1
        token = str(self._counter)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._waiting[token] = future
        try:
            try:
                await client.publish(subject, data, reply=f"{self._inbox}.{token}", headers=headers)
            except Exception as exc:
                raise LinkError(self.describe("cannot publish to", exc)) from None
            try:
                async with asyncio.timeout(
                    self.options.request_timeout if timeout is None else timeout
                ):
                    return await future
            except TimeoutError:
                raise LinkError(
                    self.describe("no answer within the request timeout from", subject)
                ) from None
        finally:
            self._waiting.pop(token, None)

    async def request(
        self,
        subject: str,
        data: bytes = b"",
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """A JetStream request: the decoded JSON answer, or :class:`ApiError`."""
        msg = await self.request_raw(subject, data, headers, timeout)
        status = msg.headers.get(STATUS) if msg.headers else None
        if status == "503":
            raise NoResponders(f"no responders on {subject!r} (no such stream?)")
        try:
            answer: dict[str, Any] = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            raise ApiError(f"unexpected answer on {subject!r}: {msg.data[:200]!r}") from None
        error = answer.get("error")
        if error is not None:
            raise ApiError(
                f"{subject}: {error.get('description', error)}",
                int(error.get("code", 0) or 0),
                int(error.get("err_code", 0) or 0),
            )
        return answer

    def _on_reply(
        self, subject: bytes, reply: bytes, data: bytes, headers: dict[str, str] | None
    ) -> None:
        future = self._waiting.pop(subject[self._inbox_len :].decode(), None)
        if future is not None and not future.done():
            future.set_result(Message(reply, data, headers))

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(self, subject: str, handler: Handler) -> Any:
        """Subscribe ``handler`` to ``subject``; returns nats-py's subscription. nats-py
        subscribes again by itself after a reconnect."""
        client = self.require()

        async def fallback(msg: Any) -> None:  # also whatever arrives before the fast path
            result = handler(msg.subject.encode(), msg.reply.encode(), msg.data, msg.headers)
            if result is not None:
                await result

        subscription = await client.subscribe(
            subject, cb=fallback, pending_msgs_limit=0, pending_bytes_limit=0
        )
        direct = getattr(client, "direct", None)
        if direct is not None:
            direct[subscription._id] = handler
        return subscription

    async def unsubscribe(self, subscription: Any, *, drain: bool = False) -> None:
        """Stop a subscription. With ``drain``, the server is told first and answers a
        PING: what it sent before is still handled, nothing comes after."""
        client = self.client
        if client is None:
            return
        if drain and self.up and hasattr(client, "_send_unsubscribe"):
            try:
                await client._send_unsubscribe(subscription._id)
                await self.barrier(client)
            except Exception as exc:
                log.debug("%s: unsubscribing: %s", self.role, exc)
        direct = getattr(client, "direct", None)
        if direct is not None:
            direct.pop(subscription._id, None)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def _abandon(client: Any) -> None:
    """Close a client that never connected (nats-py's close can hang after a TLS failure)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2):
            await client.close()


def _supports_reconnect_handler(client_class: Any) -> bool:
    try:
        return "reconnect_to_server_handler" in inspect.signature(client_class.connect).parameters
    except (TypeError, ValueError):
        return False


def _is_auth(text: str) -> bool:
    lowered = text.lower()
    return "authoriz" in lowered or "authentic" in lowered or "permission" in lowered

"""The signal bus: broadcast signals, and calls (request/response) on top of them.

:class:`SignalBus` is both the transport contract (the ``_``-prefixed primitives a transport
implements) and the user API (``bus.user_enter.send(...)``). Fan-out to the agents of one
process and call bookkeeping are done here once, so every transport behaves the same.
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any, ClassVar

from .capabilities import Capabilities
from .codecs import Codec, guarded
from .connection import Connection
from .declarations import Namespace, Signal, lookup, signals_of
from .envelope import Envelope, Kind, new_id
from .errors import CallTimeout, DecodeError, TransportError
from .middleware import Hooks, Middleware, chain, notify
from .registry import active_registry
from .replies import Gathering, Reply, bad_sender, check_timeout, reply_from
from .signalhandle import SignalHandle
from .urls import redact, resolve

__all__ = ["Reply", "SignalBus", "SignalCallback", "SignalHandle", "Subscription"]

log = logging.getLogger("microhive.bus")

SignalCallback = Callable[[Envelope], None]
"""Called for each incoming signal or call; must not block (the agent spawns a task)."""


class Subscription:
    """An agent's interest in some signals; ``close()`` stops delivery to it."""

    def __init__(self, bus: SignalBus, channels: frozenset[str], callback: SignalCallback) -> None:
        self.bus = bus
        self.channels = channels
        self.callback = callback

    async def close(self) -> None:
        await self.bus._remove(self)


class SignalBus(Connection):
    """Base class of every signal bus. Construct one with :meth:`from_url`."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        url: str,
        *,
        signals: Iterable[Signal] | Namespace[Signal] | None = None,
        codec: Codec | None = None,
        prefix: str = "",
        middleware: Iterable[Middleware] = (),
    ) -> None:
        self.url = url
        self.signals = signals_of(signals)
        self.middleware = chain(middleware)
        self.hooks = Hooks(self.middleware)
        self.registry = active_registry()  # where names the bus was not given are looked up
        self.codec: Codec = guarded(codec)
        self.prefix = prefix
        self.inbox = f"{prefix}reply.{new_id()}"
        self._listeners: dict[str, list[Subscription]] = {}
        self._calls: dict[str, asyncio.Future[Reply]] = {}
        self._gatherings: dict[str, Gathering] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SignalBus:
        """The bus for ``url``'s scheme (``memory://``, ``redis://``...)."""
        bus_class: type[SignalBus] = resolve(url, "bus")
        return bus_class(url, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(self.url)}>"

    # -- lifecycle ---------------------------------------------------------------------

    def _before_close(self) -> None:
        """Pending calls fail with :class:`TransportError`; gatherings return what came."""
        for future in self._calls.values():
            if not future.done():
                future.set_exception(TransportError(f"{self!r} closed during the call"))
        for gathering in self._gatherings.values():
            if not gathering.done.done():
                gathering.done.set_result(None)
        self._listeners.clear()

    # -- user API ----------------------------------------------------------------------

    def __getattr__(self, name: str) -> SignalHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return SignalHandle(self, self._resolve(name))

    def signal(self, signal: Signal | str) -> SignalHandle:
        """A handle for ``signal``; same as attribute access, for names that aren't identifiers."""
        return SignalHandle(self, self._resolve(signal))

    def _resolve(self, signal: Signal | str) -> Signal:
        if isinstance(signal, Signal):
            return signal
        found: Signal = lookup("signal", signal, self.signals, self.registry)
        return found

    async def send(self, signal: Signal | str, sender: str, **kwargs: Any) -> None:
        """Broadcast ``signal`` to every subscribed agent instance (at most once, no reply)."""
        sig = signal if type(signal) is Signal else self._resolve(signal)
        if type(sender) is not str:
            raise bad_sender(sender)
        envelope = Envelope(Kind.SIGNAL, sig.name, sig.make_payload(kwargs), sender)
        if self.hooks.publishing:
            notify(self.hooks.publishing, envelope, sig.name)
        await self._publish_envelope(envelope)

    async def call(
        self, signal: Signal | str, sender: str, *, timeout: float = 60, **kwargs: Any
    ) -> Any:
        """Send ``signal`` as a call and return the first answer.

        Raises :class:`CallTimeout` when nobody answers within ``timeout`` seconds and
        :class:`RemoteError` when the first answer is an exception.
        """
        sig = self._resolve(signal)
        check_timeout(sig, timeout)
        await self.connect()
        request = self._request(sig, sender, kwargs)
        if self.hooks.publishing or self.hooks.called:
            return await self._observed_call(sig, request, timeout)
        return await self._call(sig, request, timeout)

    async def _call(self, sig: Signal, request: Envelope, timeout: float) -> Any:
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._calls[request.id] = future
        try:
            await self._publish_envelope(request)
            try:
                async with asyncio.timeout(timeout):
                    reply = await future
            except TimeoutError:
                raise CallTimeout(f"no answer to call {sig.name!r} within {timeout:g} s") from None
        finally:
            self._calls.pop(request.id, None)
        if reply.error is not None:
            raise reply.error
        return reply.value

    async def _observed_call(self, sig: Signal, request: Envelope, timeout: float) -> Any:
        notify(self.hooks.publishing, request, sig.name)
        started = perf_counter()
        error: BaseException | None = None
        try:
            return await self._call(sig, request, timeout)
        except Exception as exc:
            error = exc
            raise
        finally:
            notify(self.hooks.called, sig.name, perf_counter() - started, error)

    async def gather(
        self,
        signal: Signal | str,
        sender: str,
        *,
        timeout: float = 1,
        expect: int | None = None,
        **kwargs: Any,
    ) -> list[Reply]:
        """Send ``signal`` as a call and collect every answer that arrives within ``timeout``.

        With ``expect=N`` it returns as soon as N answers arrived.
        """
        sig = self._resolve(signal)
        check_timeout(sig, timeout)
        await self.connect()
        request = self._request(sig, sender, kwargs)
        if self.hooks.publishing:
            notify(self.hooks.publishing, request, sig.name)
        gathering = Gathering(expect)
        self._gatherings[request.id] = gathering
        try:
            await self._publish_envelope(request)
            try:
                async with asyncio.timeout(timeout):
                    await gathering.done
            except TimeoutError:
                pass
        finally:
            self._gatherings.pop(request.id, None)
        return list(gathering.replies)

    def _request(self, sig: Signal, sender: str, kwargs: dict[str, Any]) -> Envelope:
        if type(sender) is not str:
            raise bad_sender(sender)
        request_id = new_id()
        return Envelope(
            Kind.CALL,
            sig.name,
            sig.make_payload(kwargs),
            sender,
            id=request_id,
            correlation_id=request_id,
            reply_to=self.inbox,
        )

    async def _publish_envelope(self, envelope: Envelope) -> None:
        """Encode and broadcast a signal or call; a transport may skip the bytes in-process.

        ``envelope`` is made for this publish alone: a transport may hand it on as it is.
        """
        data = self.codec.encode(envelope)
        if not self._connected:
            await self.connect()
        await self._publish(envelope.name, data)

    # -- runtime API (used by agents) --------------------------------------------------

    async def subscribe(self, names: Iterable[str], callback: SignalCallback) -> Subscription:
        """Deliver signals and calls named ``names`` to ``callback`` until closed.

        Returns once the transport confirmed the subscription.
        """
        await self.connect()
        subscription = Subscription(self, frozenset(names), callback)
        new = [name for name in subscription.channels if name not in self._listeners]
        for name in subscription.channels:
            self._listeners.setdefault(name, []).append(subscription)
        if new:
            await self._subscribe(new)
        return subscription

    async def _remove(self, subscription: Subscription) -> None:
        gone = []
        for name in subscription.channels:
            listeners = self._listeners.get(name)
            if listeners and subscription in listeners:
                listeners.remove(subscription)
                if not listeners:
                    del self._listeners[name]
                    gone.append(name)
        if gone and self._connected:
            await self._unsubscribe(gone)

    async def reply(
        self,
        request: Envelope,
        responder: str,
        value: Any = None,
        error: BaseException | None = None,
    ) -> None:
        """Answer a call; an ``error`` reaches the caller as :class:`RemoteError`."""
        if request.reply_to is None:
            return
        if error is None:
            payload: dict[str, Any] = {"ok": True, "value": value}
        else:
            payload = {"ok": False, "error": {"type": type(error).__name__, "message": str(error)}}
        envelope = Envelope(
            Kind.REPLY, request.name, payload, responder, correlation_id=request.correlation_id
        )
        if self.hooks.publishing:
            notify(self.hooks.publishing, envelope, request.reply_to)
        try:
            data = self.codec.encode(envelope)
        except Exception as exc:  # the value itself could not be encoded: tell the caller
            fallback = Envelope(
                Kind.REPLY,
                request.name,
                {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc)}},
                responder,
                correlation_id=request.correlation_id,
            )
            data = self.codec.encode(fallback)
        await self._send_direct(request.reply_to, data)

    # -- called by transports with incoming data ---------------------------------------

    def _deliver(self, channel: str, data: bytes) -> None:
        """A transport received ``data`` on a signal channel."""
        if channel not in self._listeners:
            return
        try:
            envelope = self.codec.decode(data)
        except DecodeError as exc:
            log.error("dropped undecodable signal on %r (%d bytes): %s", channel, len(data), exc)
            return
        self._dispatch(channel, envelope)

    def _dispatch(self, channel: str, envelope: Envelope) -> None:
        """Hand a decoded signal or call to this bus's subscriptions on ``channel``."""
        listeners = self._listeners.get(channel)
        if not listeners:
            return
        for subscription in tuple(listeners):
            try:
                subscription.callback(envelope)
            except Exception:
                log.exception("signal listener failed on %r", channel)

    def _deliver_reply(self, data: bytes) -> None:
        """A transport received ``data`` on this bus's inbox."""
        try:
            envelope = self.codec.decode(data)
            reply = reply_from(envelope)
        except DecodeError as exc:
            log.error("dropped undecodable reply (%d bytes): %s", len(data), exc)
            return
        key = envelope.correlation_id or ""
        future = self._calls.get(key)
        if future is not None:
            if not future.done():
                future.set_result(reply)
            return
        gathering = self._gatherings.get(key)
        if gathering is not None:
            gathering.replies.append(reply)
            enough = gathering.expect is not None and len(gathering.replies) >= gathering.expect
            if enough and not gathering.done.done():
                gathering.done.set_result(None)

    # -- transport primitives ----------------------------------------------------------

    @abstractmethod
    async def _publish(self, channel: str, data: bytes) -> None:
        """Broadcast ``data`` to every bus subscribed to ``channel``."""

    @abstractmethod
    async def _send_direct(self, address: str, data: bytes) -> None:
        """Send ``data`` to the bus whose inbox is ``address`` (a call reply)."""

    @abstractmethod
    async def _subscribe(self, channels: list[str]) -> None:
        """Start receiving ``channels``; return once the engine confirmed."""

    @abstractmethod
    async def _unsubscribe(self, channels: list[str]) -> None:
        """Stop receiving ``channels``."""

"""The queue broker: durable messages, competing consumers, retries and dead letters.

:class:`QueueBroker` is the transport contract and the user API (``broker.post.send(...)``).
The agent runtime decides *when* to ack, retry or dead-letter (its policy); a transport's
:class:`Delivery` decides *how* on its engine (its mechanism).
"""

from __future__ import annotations

import functools
import logging
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, Unpack, overload

from .capabilities import Capabilities
from .catalog import Catalog
from .codecs import Codec, guarded
from .connection import Connection
from .deadletters import Selection, picked
from .declarations import (
    Exchange,
    Namespace,
    Queue,
    check_routing_key,
    lookup,
    queues_of,
    undeclared_queue,
)
from .deliveries import Consumer, DeadLetter, Delivery
from .envelope import Envelope, Kind
from .errors import (
    CapabilityError,
    ConfigurationError,
    PayloadError,
)
from .middleware import Hooks, Middleware, chain, notify
from .queuehandle import QueueHandle
from .registry import active_registry
from .sending import MAX_DELAY, check_delay, check_sender, checked_headers, find_exchange
from .stats import QueueStats
from .tailing import check_tail, follow
from .urls import redact, resolve

if TYPE_CHECKING:
    from .tasks.canvas import Signature, Workflow
    from .tasks.job import Job
    from .tasks.submit import SubmitOptions

log = logging.getLogger("microhive.broker")

R = TypeVar("R")

__all__ = ["MAX_DELAY", "Consumer", "DeadLetter", "Delivery", "QueueBroker", "QueueHandle"]


class QueueBroker(Connection):
    """Base class of every queue broker. Construct one with :meth:`from_url`."""

    capabilities: ClassVar[Capabilities] = Capabilities()

    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[Queue] | Namespace[Queue] | None = None,
        codec: Codec | None = None,
        middleware: Iterable[Middleware] = (),
    ) -> None:
        self.url = url
        self.queues = queues_of(queues)
        self._given: dict[str, Queue] = {}  # declarations handed in directly, by name
        self.middleware = chain(middleware)
        self.hooks = Hooks(self.middleware)
        self.registry = active_registry()  # where names the broker was not given are looked up
        self.codec: Codec = guarded(codec)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> QueueBroker:
        """The broker for ``url``'s scheme (``memory://``, ``redis://``...)."""
        broker_class: type[QueueBroker] = resolve(url, "broker")
        return broker_class(url, **options)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {redact(self.url)}>"

    # -- user API ----------------------------------------------------------------------

    def __getattr__(self, name: str) -> QueueHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return QueueHandle(self, self._resolve(name))

    def queue(self, queue: Queue | str) -> QueueHandle:
        """A handle for ``queue``: a declaration, a declared name, or the name of a queue the
        program did not declare (an existing engine queue: schemaless)."""
        return QueueHandle(self, self._resolve(queue, undeclared=True))

    def declaration(self, name: str) -> Queue:
        """The declaration a transport goes by for queue ``name`` (its payload kind, its
        engine address): one handed to this broker directly (``consume(Queue(...))``, an
        agent's consumer), the broker's own, the program's, or a plain undeclared queue."""
        found = self._given.get(name) or self.queues.get(name) or self.registry.get("queue", name)
        return found if found is not None else undeclared_queue(name)

    def _resolve(self, queue: Queue | str, *, undeclared: bool = False) -> Queue:
        if isinstance(queue, Queue):
            if self._given.get(queue.name) is not queue:
                self._given[queue.name] = queue
                self._declaration_changed(queue.name)
            return queue
        if undeclared and queue not in self.queues and self.registry.get("queue", queue) is None:
            return undeclared_queue(queue)
        found: Queue = lookup("queue", queue, self.queues, self.registry)
        return found

    async def send(
        self,
        queue: Queue | str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        headers: Mapping[str, str] | None = None,
        sender: str = "",
    ) -> str:
        """Enqueue ``payload``; returns the message id once the engine accepted it."""
        target = self._resolve(queue)
        if delay is not None:
            check_delay(target.name, delay)
            if delay > 0 and not self.capabilities.delayed_delivery:
                raise CapabilityError(f"{self!r} does not support delayed delivery")
        if key is not None and not isinstance(key, str):
            raise PayloadError(f"queue {target.name!r}: key must be a string")
        check_sender(f"queue {target.name!r}", sender)
        checked = checked_headers(target.name, headers)
        if key is not None:
            checked["x-key"] = key  # so tail(key=...) and handlers see it on every engine
        envelope = Envelope(
            Kind.MESSAGE, target.name, target.make_payload(payload), sender, headers=checked
        )
        for hook in self.hooks.publishing:  # notify() inlined: this runs per message
            try:
                hook(envelope, target.name)
            except Exception:
                log.exception("middleware hook %r failed", hook)
        data = self.codec.encode(envelope)
        if not self._connected:
            await self.connect()
        await self._publish(target.name, envelope, data, key=key, delay=delay or 0.0)
        return envelope.id

    async def length(self, queue: Queue | str) -> int:
        """How many messages of the queue are not yet acknowledged (waiting, delayed, in flight)."""
        await self.connect()
        return await self._length(self._resolve(queue).name)

    async def dead_letters(self, queue: Queue | str, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` messages parked in the queue's dead-letter store."""
        await self.connect()
        return await self._dead_letters(self._resolve(queue).name, limit)

    async def stats(self, queue: Queue | str) -> QueueStats:
        """Length, consumers, in flight and dead letters of ``queue`` (declared or not), in
        one answer; a figure the engine cannot tell is None (see docs/operations.md)."""
        await self.connect()
        return await self._stats(self._resolve(queue, undeclared=True).name)

    async def requeue(
        self,
        queue: Queue | str,
        *,
        to: Queue | str | None = None,
        reason: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        letters: Iterable[DeadLetter] | None = None,
    ) -> int:
        """Send the queue's chosen dead letters back — to ``to`` (default the queue itself) —
        as first attempts, with the header ``x-requeued`` saying why they died; returns how
        many. Each is published before it leaves the dead letters: a crash in between
        duplicates it, never loses it. Filters: ``reason`` (a part of the reason),
        ``older_than`` (seconds since it died), ``limit``, ``letters`` (only these, as
        ``dead_letters()`` listed them: an operator's pick); oldest first."""
        source = self._resolve(queue, undeclared=True)
        target = source if to is None else self._resolve(to, undeclared=True)
        selection = Selection(reason, older_than, limit, picked(letters))
        await self.connect()
        return await self._requeue(source.name, target.name, selection)

    async def purge(
        self,
        queue: Queue | str,
        *,
        reason: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        letters: Iterable[DeadLetter] | None = None,
    ) -> int:
        """Delete the queue's chosen dead letters for good (filters as :meth:`requeue`);
        returns how many."""
        source = self._resolve(queue, undeclared=True)
        selection = Selection(reason, older_than, limit, picked(letters))
        await self.connect()
        return await self._purge(source.name, selection)

    async def declare(self, items: Iterable[Queue | str] | Catalog | None = None) -> list[str]:
        """Create every queue of ``items`` (default: the broker's own queues) on the engine
        up front — with its dead letters, delays, exchanges and bindings — idempotently, so
        plain publishers can start before any consumer. Returns the queues' names."""
        if items is None:
            queues = list(self.queues.values())
        elif isinstance(items, Catalog):
            queues = list(items.queues.values())
        else:
            queues = [self._resolve(item, undeclared=True) for item in items]
        await self.connect()
        for queue in queues:
            if queue.bindings and not self.capabilities.routing:
                raise CapabilityError(
                    f"{self!r} cannot bind queue {queue.name!r} to exchanges (no 'routing')"
                )
            await self._declare_queue(queue)
        return [queue.name for queue in queues]

    def tail(
        self, queue: Queue | str, *, last: int = 0, key: str | None = None
    ) -> AsyncIterator[Envelope]:
        """The last ``last`` messages of the queue, oldest first, then every new one as it is
        sent — without consuming them: the queue's consumers still get every message.

        For dashboards and replays (the seed's telemetry view starts from the last 180
        readings). With ``key``, only the messages sent with that key (``send(..., key=)``,
        header ``x-key``): "the last 180 readings of this satellite". Nothing is
        acknowledged; a reader that falls behind the engine's retention misses what was
        trimmed. :class:`CapabilityError` on a transport without ``replay``. Where the queue
        has a schema, each envelope's payload is the validated model (as a consumer's handler
        gets it); a message that fails it is skipped with a warning.
        """
        target = self._resolve(queue)
        if not self.capabilities.replay:
            raise CapabilityError(f"{self!r} cannot replay a queue's history (no 'replay')")
        check_tail(last, key)
        return follow(self, target, last, key)

    async def consume(self, queue: Queue | str, *, prefetch: int = 1, name: str = "") -> Consumer:
        """Start consuming; ``prefetch`` bounds deliveries held but not yet settled."""
        if prefetch < 1:
            raise ConfigurationError("prefetch must be at least 1")
        target = self._resolve(queue)
        if target.dead_of is not None:
            from .deadconsumer import DeadLetterConsumer

            await self.connect()
            return DeadLetterConsumer(self, target.dead_of, prefetch)
        if target.bindings and not self.capabilities.routing:
            raise CapabilityError(
                f"{self!r} cannot bind queue {target.name!r} to exchanges (no 'routing')"
            )
        await self.connect()
        if target.bindings:
            await self._bind(target)
        return await self._consume(target.name, prefetch=prefetch, name=name)

    async def publish(
        self,
        exchange: Exchange | str,
        payload: Any,
        *,
        routing_key: str = "",
        headers: Mapping[str, str] | None = None,
        sender: str = "",
        queues: Iterable[Queue] | None = None,
    ) -> str:
        """Publish ``payload`` to ``exchange``; the engine routes it to the bound queues.

        The queues of ``queues`` (default: the broker's catalog) bound to the exchange are
        declared first, so they receive it even before their consumers start. Raises
        :class:`UnroutableError` when no binding matches and :class:`CapabilityError` on a
        transport without ``routing``. Returns the message id. The envelope's ``name`` is the
        exchange's, and the header ``x-routing-key`` carries the routing key.
        """
        if not self.capabilities.routing:
            raise CapabilityError(f"{self!r} cannot publish to exchanges (no 'routing')")
        known = list(self.queues.values() if queues is None else queues)
        target = find_exchange(exchange, known)
        try:
            check_routing_key(f"exchange {target.name!r}", routing_key)
        except ConfigurationError as exc:
            raise PayloadError(str(exc)) from None
        check_sender(f"exchange {target.name!r}", sender)
        checked = checked_headers(target.name, headers)
        checked["x-routing-key"] = routing_key
        envelope = Envelope(Kind.MESSAGE, target.name, payload, sender, headers=checked)
        if self.hooks.publishing:
            notify(self.hooks.publishing, envelope, target.name)
        data = self.codec.encode(envelope)
        await self.connect()
        for queue in known:
            if target in queue.exchanges:
                await self._bind(queue)
        await self._publish_routed(target, routing_key, envelope, data)
        return envelope.id

    # -- tasks (microhive/tasks) -----------------------------------------------------------

    @overload
    async def submit(self, target: Signature[R], **options: Unpack[SubmitOptions]) -> Job[R]: ...

    @overload
    async def submit(self, target: Workflow, **options: Unpack[SubmitOptions]) -> Job[Any]: ...

    async def submit(
        self, target: Signature[Any] | Workflow, **options: Unpack[SubmitOptions]
    ) -> Job[Any]:
        """Submit a task (``queues.add.s(x=1, y=1)``) or a workflow (``chain``, ``group``,
        ``chord``); returns its :class:`~microhive.tasks.job.Job` at once. Options (keyword
        only): ``delay``, ``at``, ``job_id``, ``link``, ``link_error`` (docs/tasks.md)."""
        job: Job[Any] = await _submit()(self, target, **options)
        return job

    def job(self, job_id: str) -> Job[Any]:
        """The job ``job_id`` (submitted here or by any other process) to ask or wait for."""
        from .tasks.job import Job
        from .tasks.stores import store_for

        return Job(store_for(self), job_id)

    async def close(self) -> None:
        """Close the connection and the result store the broker's jobs opened."""
        await super().close()
        if getattr(self, "_result_store", None) is not None:
            from .tasks.stores import close_store

            await close_store(self)

    # -- transport primitives ----------------------------------------------------------

    @abstractmethod
    async def _publish(
        self, queue: str, envelope: Envelope, data: bytes, *, key: str | None, delay: float
    ) -> None:
        """Store the message; return only once the engine has it (acknowledged publish)."""

    @abstractmethod
    async def _length(self, queue: str) -> int: ...

    @abstractmethod
    async def _dead_letters(self, queue: str, limit: int) -> list[DeadLetter]: ...

    async def _stats(self, queue: str) -> QueueStats:
        """The queue's figures; a transport overrides it with what its engine can tell."""
        return QueueStats(queue, await self._length(queue), None, None, None)

    @abstractmethod
    async def _consume(self, queue: str, *, prefetch: int, name: str) -> Consumer: ...

    async def _bind(self, queue: Queue) -> None:
        """Declare ``queue`` with its exchange bindings (transports with ``routing``)."""
        raise CapabilityError(f"{self!r} cannot bind queues to exchanges (no 'routing')")

    async def _publish_routed(
        self, exchange: Exchange, routing_key: str, envelope: Envelope, data: bytes
    ) -> None:
        """Publish to ``exchange``; raise :class:`UnroutableError` when nothing is bound for
        ``routing_key``; return once the engine has it (transports with ``routing``)."""
        raise CapabilityError(f"{self!r} cannot publish to exchanges (no 'routing')")

    def _declaration_changed(self, queue: str) -> None:
        """A new declaration of ``queue`` was handed in: a transport drops what it derived
        from the old one (engine names from ``address``...)."""

    def _tail_keyed(self, queue: str, last: int, key: str) -> AsyncIterator[bytes]:
        """As :meth:`_tail`, the history part holding the last ``last`` messages sent with
        ``key`` (messages of other keys may come too: they are filtered out)."""
        raise CapabilityError(f"{self!r} cannot replay one key's messages yet")

    async def _requeue(self, queue: str, to: str, selection: Selection) -> int:
        """Move chosen dead letters of ``queue`` to ``to`` (publish first, then remove)."""
        raise CapabilityError(f"{self!r} cannot requeue dead letters yet")

    async def _purge(self, queue: str, selection: Selection) -> int:
        raise CapabilityError(f"{self!r} cannot purge dead letters yet")

    async def _declare_queue(self, queue: Queue) -> None:
        """Create ``queue`` (and its bindings) on the engine; the default: on first use."""
        if queue.bindings:
            await self._bind(queue)

    def _tail(self, queue: str, last: int) -> AsyncIterator[bytes]:
        """The encoded messages :meth:`tail` yields; transports with ``replay`` override it."""
        raise CapabilityError(f"{self!r} cannot replay a queue's history")


@functools.cache
def _submit() -> Any:
    """The task layer's ``submit``, imported once on first use (it imports this module)."""
    from .tasks.submit import submit

    return submit

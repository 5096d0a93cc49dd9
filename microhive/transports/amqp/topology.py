"""The queues, exchanges and bindings a broker declares, once per connection.

For a queue ``jobs`` (``prefix`` goes before every name; ``Queue(address=...)`` names the
work queue verbatim instead; docs/transports/amqp.md):

- ``jobs``: durable and nothing else, as a plain client declares it (microhive's retries
  and dead letters are its own republishes, they need no queue argument). With
  ``declare=arguments`` or a length limit, also ``x-dead-letter-exchange:
  microhive:dead-letter`` and ``x-dead-letter-routing-key: jobs`` (messages RabbitMQ itself
  drops — overflow, a foreign consumer's reject — are dead-lettered, not lost). A queue that
  exists with other arguments (an earlier version's) is used as it is;
- ``jobs:dead``: the dead-letter queue, bound to the direct exchange
  ``microhive:dead-letter`` with key ``jobs``.

Declarations are remembered per connection *generation*: after a reconnect everything is
declared again, and a publish checks the generation of the channel it goes out on (a send
that waited for the reconnect must not trust what was declared on the old connection: a
queue declared moments before a crash of the node can be gone after its restart).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiormq.exceptions as amqp_errors
from aiormq.abc import AbstractChannel

from ...declarations import Exchange, Queue
from ...errors import TransportError
from .link import Link
from .options import AmqpOptions, Limits

log = logging.getLogger("microhive.amqp")

_INEQUIVALENT = re.compile(
    r"inequivalent arg '(?P<field>[^']+)' for (?P<kind>exchange|queue) '[^']*' in vhost "
    r"'[^']*': (?P<detail>.*)",
    re.DOTALL,
)
_FLAGS = ("durable", "auto_delete", "exclusive", "internal")


def refusal(kind: str, name: str, exc: BaseException, wanted_type: str = "") -> str:
    """What RabbitMQ's PRECONDITION_FAILED says differs, for a message.

    RabbitMQ names the field: ``inequivalent arg 'durable' for exchange 'x' in vhost '/':
    received 'true' but current is 'false'`` (``type``, a flag, or an ``x-`` argument).
    """
    text = str(exc.args[0]) if exc.args else str(exc)
    found = _INEQUIVALENT.search(text)
    if found is None:
        return f"{kind} {name!r} exists and RabbitMQ refused the declaration: {text}"
    field, detail = found["field"], found["detail"].strip()
    if field == "type":
        what = f"another type than {wanted_type!r}" if wanted_type else "another type"
    elif field in _FLAGS:
        what = f"another {field!r} flag"
    else:
        what = f"another value of argument {field!r}"
    return f"{kind} {name!r} exists with {what} (RabbitMQ: {detail})"


def _earlier_microhive(exc: BaseException) -> bool:
    """Whether the difference is the dead-letter exchange earlier versions of microhive declared
    (or with ``declare=arguments``): an expected difference, not worth a warning."""
    found = _INEQUIVALENT.search(str(exc.args[0]) if exc.args else "")
    return found is not None and found["field"].startswith("x-dead-letter-")


def _argument_only(exc: BaseException) -> bool:
    """Whether only an ``x-`` argument differs (a queue someone else declared plainly)."""
    found = _INEQUIVALENT.search(str(exc.args[0]) if exc.args else "")
    return found is not None and found["field"] not in ("type", *_FLAGS)


class Topology:
    """Declares a broker's queues and exchanges on its link, each once per generation."""

    def __init__(
        self,
        options: AmqpOptions,
        limits: Mapping[str, Limits],
        link: Callable[[], Link],
        name: Callable[[str], str] | None = None,
    ) -> None:
        self.options = options
        self.limits = limits
        self._link = link
        self.name = name or options.queue
        """The AMQP queue of a microhive queue: its ``address``, or the prefixed name."""
        self.generation = -1
        self._declared: set[str] = set()
        self._declaring: dict[str, asyncio.Future[None]] = {}

    @property
    def link(self) -> Link:
        return self._link()

    def ready(self, queue: str, generation: int) -> bool:
        """Whether ``queue`` was declared on connection ``generation`` (no await)."""
        return self.generation == generation and queue in self._declared

    def forget(self) -> None:
        """Declare everything again on next use (a reconnect, a queue deleted behind us)."""
        self.generation = -1

    def _fresh(self) -> int:
        generation = self.link.generation
        if generation != self.generation:
            self.generation = generation
            self._declared.clear()
            self._declaring.clear()
        return generation

    async def _once(self, key: str, declare: Callable[[], Awaitable[None]]) -> None:
        """Run ``declare()`` once per connection generation; concurrent callers share it."""
        generation = self._fresh()
        if key in self._declared:
            return
        pending = self._declaring.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        pending = self._declaring[key] = asyncio.ensure_future(declare())
        try:
            await asyncio.shield(pending)
        finally:
            if self._declaring.get(key) is pending:
                del self._declaring[key]
        if self.generation == generation:  # not if the link reconnected meanwhile
            self._declared.add(key)

    async def queue(self, queue: str) -> None:
        """Declare ``queue`` with its dead-letter queue (once per connection)."""
        if self.ready(queue, self.link.generation):
            return
        await self._once(queue, lambda: self._queue_now(queue))

    def arguments(self, queue: str) -> dict[str, Any] | None:
        """The arguments of the work queue ``queue``: none by default, as a plain client
        declares it (``durable=True``), so the seed's worker can declare it too; the
        dead-letter exchange with ``declare=arguments`` or a length limit (overflow then
        dead-letters), ``x-queue-type`` for quorum queues."""
        options = self.options
        found: dict[str, Any] = {}
        if options.queue_type != "classic":
            found["x-queue-type"] = options.queue_type
        limits = self.limits.get(queue, options.limits).arguments()
        if options.declare == "arguments" or limits:
            found["x-dead-letter-exchange"] = options.dead_letter_exchange
            found["x-dead-letter-routing-key"] = self.name(queue)
            found.update(limits)
        return found or None

    async def _queue_now(self, queue: str) -> None:
        options, link = self.options, self.link
        name, dead = self.name(queue), options.dead(queue)
        dlx = options.dead_letter_exchange
        extra: dict[str, Any] = {}
        if options.queue_type != "classic":
            extra["x-queue-type"] = options.queue_type
        channel = await link.rpc()
        try:
            await self._exchange_on(channel, dlx, "direct")
            await self._queue_on(channel, dead, extra or None)
            await channel.queue_bind(dead, dlx, routing_key=name)
            try:
                await channel.queue_declare(name, durable=True, arguments=self.arguments(queue))
            except amqp_errors.ChannelPreconditionFailed as exc:
                link.discard(channel)
                if not _argument_only(exc):
                    raise TransportError(refusal("queue", name, exc)) from None
                # declared with other arguments: by an earlier microhive (a dead-letter
                # exchange) or by someone else; used as it is, never redeclared
                level = logging.DEBUG if _earlier_microhive(exc) else logging.WARNING
                log.log(level, "%s; using it as it is", refusal("queue", name, exc))
                channel = await link.rpc()
                await channel.queue_declare(name, passive=True)
        except TransportError:
            raise
        except Exception as exc:
            raise link.translate(exc) from exc

    async def _queue_on(
        self, channel: AbstractChannel, name: str, arguments: dict[str, Any] | None
    ) -> None:
        try:
            await channel.queue_declare(name, durable=True, arguments=arguments)
        except amqp_errors.ChannelPreconditionFailed as exc:
            self.link.discard(channel)
            raise TransportError(refusal("queue", name, exc)) from None

    async def _exchange_on(self, channel: AbstractChannel, name: str, kind: str) -> None:
        try:
            await channel.exchange_declare(name, exchange_type=kind, durable=True)
        except amqp_errors.ChannelPreconditionFailed as exc:
            self.link.discard(channel)
            raise TransportError(refusal("exchange", name, exc, kind)) from None

    async def bind(self, queue: Queue) -> None:
        """Declare ``queue``, the exchanges it is bound to, and its bindings."""
        await self.queue(queue.name)
        await self._once(f"bindings of {queue.name}", lambda: self._bind_now(queue))

    async def _bind_now(self, queue: Queue) -> None:
        link = self.link
        channel = await link.rpc()
        try:
            for exchange in queue.exchanges:
                await self._exchange_on(
                    channel, self.options.exchange(exchange.name), exchange.type
                )
            for binding in queue.bindings:
                await channel.queue_bind(
                    self.name(queue.name),
                    self.options.exchange(binding.exchange.name),
                    routing_key=binding.key,
                )
        except TransportError:
            raise
        except Exception as exc:
            raise link.translate(exc) from exc

    async def exchange(self, exchange: Exchange) -> None:
        """Declare ``exchange`` (once per connection)."""
        name = self.options.exchange(exchange.name)
        await self._once(f"exchange {name} {exchange.type}", lambda: self._exchange_now(exchange))

    def exchange_ready(self, exchange: Exchange, generation: int) -> bool:
        key = f"exchange {self.options.exchange(exchange.name)} {exchange.type}"
        return self.generation == generation and key in self._declared

    async def _exchange_now(self, exchange: Exchange) -> None:
        link = self.link
        channel = await link.rpc()
        try:
            await self._exchange_on(channel, self.options.exchange(exchange.name), exchange.type)
        except TransportError:
            raise
        except Exception as exc:
            raise link.translate(exc) from exc

    async def count(self, name: str) -> int | None:
        """Ready messages in the AMQP queue ``name``; None when it does not exist."""
        found = await self.figures(name)
        return None if found is None else found[0]

    async def figures(self, name: str) -> tuple[int, int] | None:
        """(ready messages, consumers) of the AMQP queue ``name`` as a passive declare
        reports them; None when it does not exist."""
        link = self.link
        channel = await link.rpc()
        try:
            result = await channel.queue_declare(name, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            link.discard(channel)
            return None
        except Exception as exc:
            raise link.translate(exc) from exc
        return int(result.message_count or 0), int(result.consumer_count or 0)

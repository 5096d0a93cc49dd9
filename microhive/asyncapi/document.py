"""Assembling the AsyncAPI 3.0.0 document: channels, operations, messages, servers."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..agent.agent import MicroAgent
from ..agent.specs import ConsumerSpec, CronSpec, PeriodicSpec, ReceiverSpec
from ..catalog import Catalog
from ..declarations import Exchange, Queue, Signal
from ..errors import ConfigurationError
from ..urls import redact
from . import schemas
from .engines import Channel, engine

REPLIES = "replies"


def describe(
    agents: Sequence[type[MicroAgent]] = (),
    catalog: Catalog | None = None,
    *,
    bus: str = "memory://",
    broker: str = "memory://",
    title: str = "microhive application",
    version: str = "1.0.0",
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of ``agents`` and the declarations of ``catalog``, with
    the channel addresses and bindings of the engines behind ``bus`` and ``broker``."""
    return _Builder(list(agents), catalog or Catalog.empty(), bus, broker).build(title, version)


def declarations(
    agents: Sequence[type[MicroAgent]], catalog: Catalog
) -> tuple[list[Signal], list[Queue], list[Exchange]]:
    """Every signal, queue and exchange the document describes, each once."""
    signals, queues = catalog.signals, catalog.queues
    for cls in agents:
        own = cls.catalog or Catalog.empty()
        signals = signals.merge(own.signals).merge(cls.handlers.signals)
        consumed = [
            h.spec.queue for h in cls.handlers.consumers if isinstance(h.spec, ConsumerSpec)
        ]
        queues = queues.merge(own.queues).merge(consumed)
    exchanges: dict[str, Exchange] = {}
    for queue in queues.values():
        for exchange in queue.exchanges:
            other = exchanges.setdefault(exchange.name, exchange)
            if other != exchange:
                raise ConfigurationError(
                    f"conflicting declarations of exchange {exchange.name!r}: {other!r} and "
                    f"{exchange!r}"
                )
    return (
        list(signals.values()),
        list(queues.values()),
        [exchanges[name] for name in sorted(exchanges)],
    )


def _ref(*path: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in path)}


class _Builder:
    def __init__(
        self, agents: list[type[MicroAgent]], catalog: Catalog, bus: str, broker: str
    ) -> None:
        self.agents = agents
        self.signals, self.queues, exchanges = declarations(agents, catalog)
        self.bus = engine(bus, "bus") if self.signals else None
        self.broker = engine(broker, "broker")
        self.exchanges = exchanges if self.broker.routing else []
        self.skipped_exchanges = [] if self.broker.routing else exchanges
        self.urls = (bus, broker)
        self.schemas = schemas.Schemas(self.signals, self.queues)
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self.servers: dict[str, Any] = {}
        self.server_of: dict[str, str] = {}

    def build(self, title: str, version: str) -> dict[str, Any]:
        self._servers()
        for signal in self.signals:
            self._signal(signal)
        if self.signals:
            self._replies()
        for queue in self.queues:
            self._queue(queue)
        for exchange in self.exchanges:
            self._exchange(exchange)
        agents = {self._agent_name(cls): self._agent(cls) for cls in self.agents}
        document: dict[str, Any] = {
            "asyncapi": "3.0.0",
            "info": {
                "title": title,
                "version": version,
                "description": self._description(),
            },
            "defaultContentType": "application/json",
        }
        if agents:
            document["info"]["tags"] = [
                {"name": name, "description": _doc(cls) or f"agent class {name}"}
                for name, cls in zip(agents, self.agents, strict=True)
            ]
        if self.servers:
            document["servers"] = self.servers
        document["channels"] = self.channels
        document["operations"] = self.operations
        document["components"] = {"schemas": self.schemas.components, "messages": self.messages}
        if agents:
            document["x-microhive-agents"] = agents
        return document

    # -- servers -------------------------------------------------------------------------

    def _servers(self) -> None:
        bus = self.bus.server() if self.bus else None
        broker = self.broker.server()
        if bus and broker and self.urls[0] == self.urls[1]:
            self.servers["transport"] = {
                **broker,
                "description": bus["description"] + " and broker",
            }
            self.server_of = {"bus": "transport", "broker": "transport"}
            return
        for role, server in (("bus", bus), ("broker", broker)):
            if server:
                self.servers[role] = server
                self.server_of[role] = role

    def _channel(
        self, key: str, role: str, title: str, channel: Channel, messages: dict[str, Any]
    ) -> None:
        found: dict[str, Any] = {"address": channel.address, "title": title}
        found["messages"] = {}
        for message_key, message in messages.items():
            self.messages[message_key] = message
            found["messages"][message_key] = _ref("components", "messages", message_key)
        if channel.parameters:
            found["parameters"] = channel.parameters
        if role in self.server_of:
            found["servers"] = [_ref("servers", self.server_of[role])]
        if channel.bindings:
            found["bindings"] = channel.bindings
        if channel.extra:
            found["x-microhive"] = channel.extra
        self.channels[key] = found

    # -- channels ------------------------------------------------------------------------

    def _signal(self, signal: Signal) -> None:
        assert self.bus is not None
        signal_message = schemas.signal_message(signal, self.schemas)
        call_message = schemas.call_message(signal, self.schemas)
        for message, kind in ((signal_message, "signal"), (call_message, "call")):
            if bindings := self.bus.message_bindings(kind):
                message["bindings"] = bindings
        channel = self.bus.signal(signal.name)
        channel.extra = {"kind": "signal", "name": signal.name, **channel.extra}
        self._channel(
            f"signal.{signal.name}",
            "bus",
            f"signal {signal.name}",
            channel,
            {f"signal.{signal.name}": signal_message, f"call.{signal.name}": call_message},
        )

    def _replies(self) -> None:
        assert self.bus is not None
        messages = {}
        for signal in self.signals:
            message = schemas.reply_message(signal)
            if bindings := self.bus.message_bindings("reply"):
                message["bindings"] = bindings
            messages[f"reply.{signal.name}"] = message
        channel = self.bus.replies()
        self._channel(REPLIES, "bus", "replies to calls (the call's reply_to)", channel, messages)
        self.channels[REPLIES]["description"] = (
            "Replies go to the address in the call's reply_to, which the caller chooses: the "
            "address is given at run time (null here)."
        )

    def _queue(self, queue: Queue) -> None:
        message = schemas.queue_message(queue, self.schemas)
        if bindings := self.broker.message_bindings("message"):
            message["bindings"] = bindings
        channel = self.broker.queue(queue)
        channel.extra = {"kind": "queue", "name": queue.name, **channel.extra}
        self._channel(
            f"queue.{queue.name}", "broker", f"queue {queue.name}", channel,
            {f"queue.{queue.name}": message},
        )  # fmt: skip

    def _exchange(self, exchange: Exchange) -> None:
        message = schemas.exchange_message(exchange)
        if bindings := self.broker.message_bindings("message"):
            message["bindings"] = bindings
        bound = [q for q in self.queues if exchange in q.exchanges]
        channel = self.broker.exchange(exchange, bound)
        channel.extra = {
            "kind": "exchange",
            "name": exchange.name,
            "type": exchange.type,
            "bound_queues": [
                {"queue": q.name, "key": b.key} for q in bound for b in q.bindings
                if b.exchange == exchange
            ],
            **channel.extra,
        }  # fmt: skip
        self._channel(
            f"exchange.{exchange.name}", "broker", f"exchange {exchange.name}", channel,
            {f"exchange.{exchange.name}": message},
        )  # fmt: skip

    # -- operations ----------------------------------------------------------------------

    def _agent_name(self, cls: type[MicroAgent]) -> str:
        same = [other for other in self.agents if other.__name__ == cls.__name__]
        return cls.__name__ if len(same) == 1 else f"{cls.__module__}.{cls.__qualname__}"

    def _operation(self, key: str, operation: dict[str, Any]) -> None:
        base, number = key, 1
        while key in self.operations:
            number += 1
            key = f"{base}_{number}"
        self.operations[key] = operation

    def _agent(self, cls: type[MicroAgent]) -> dict[str, Any]:
        name = self._agent_name(cls)
        tags = [{"name": name}]
        for handler in cls.handlers.receivers:
            assert isinstance(handler.spec, ReceiverSpec)
            for signal in handler.spec.signals:
                operation = self._on_signal("receive", signal, tags)
                operation["summary"] = _doc(handler.function) or f"{name}.{handler.name}"
                operation["x-microhive"] = {
                    "handler": handler.name,
                    "timeout": handler.spec.timeout,
                }
                self._operation(f"{name}.{handler.name}.{signal.name}", operation)
        for handler in cls.handlers.consumers:
            spec = handler.spec
            assert isinstance(spec, ConsumerSpec)
            operation = self._on_queue("receive", spec.queue, tags)
            operation["summary"] = _doc(handler.function) or f"{name}.{handler.name}"
            if bindings := self.broker.consume_bindings(spec.queue, spec.autoack):
                operation["bindings"] = bindings
            operation["x-microhive"] = {
                "handler": handler.name,
                "timeout": spec.timeout,
                "concurrency": spec.concurrency,
                "retries": spec.retries,
                "dead_letter": spec.dead_letter,
                "autoack": spec.autoack,
                "batch": spec.batch,
            }
            self._operation(f"{name}.{handler.name}", operation)
        own = cls.catalog or Catalog.empty()
        for signal in own.signals.values():
            operation = self._on_signal("send", signal, tags)
            operation["summary"] = (
                f"{name} may send or call {signal.name} (declared in its catalog)"
            )
            self._operation(f"{name}.sends.signal.{signal.name}", operation)
        for queue in own.queues.values():
            operation = self._on_queue("send", queue, tags)
            operation["summary"] = f"{name} may send to {queue.name} (declared in its catalog)"
            self._operation(f"{name}.sends.queue.{queue.name}", operation)
        agent: dict[str, Any] = {"target": f"{cls.__module__}:{cls.__qualname__}"}
        if schedules := [_schedule(h.name, h.spec) for h in cls.handlers.schedules]:
            agent["x-microhive-schedules"] = schedules
        return agent

    def _on_signal(self, action: str, signal: Signal, tags: list[dict[str, str]]) -> dict[str, Any]:
        assert self.bus is not None
        channel = f"signal.{signal.name}"
        operation: dict[str, Any] = {
            "action": action,
            "channel": _ref("channels", channel),
            "messages": [
                _ref("channels", channel, "messages", f"signal.{signal.name}"),
                _ref("channels", channel, "messages", f"call.{signal.name}"),
            ],
            "reply": {
                "address": {
                    "location": "$message.payload#/reply_to",
                    "description": "a call's reply_to; plain signals get no reply",
                },
                "channel": _ref("channels", REPLIES),
                "messages": [_ref("channels", REPLIES, "messages", f"reply.{signal.name}")],
            },
            "tags": tags,
        }
        if action == "send" and (bindings := self.bus.send_bindings("signal")):
            operation["bindings"] = bindings
        return operation

    def _on_queue(self, action: str, queue: Queue, tags: list[dict[str, str]]) -> dict[str, Any]:
        channel = f"queue.{queue.name}"
        operation: dict[str, Any] = {
            "action": action,
            "channel": _ref("channels", channel),
            "messages": [_ref("channels", channel, "messages", f"queue.{queue.name}")],
            "tags": tags,
        }
        if action == "send" and (bindings := self.broker.send_bindings("queue")):
            operation["bindings"] = bindings
        return operation

    def _description(self) -> str:
        bus, broker = (redact(url).partition("?")[0] for url in self.urls)
        lines = [
            f"Generated by `microhive asyncapi` for bus {bus} and broker {broker}.",
            "",
            "Each message payload is the whole microhive envelope (docs/wire-format.md) with "
            "the declared arguments or schema in its `payload` key. Operations: an agent's "
            "receivers (`receive` on the signal channel, answering calls through `reply`), its "
            "consumers (`receive` on the queue channel) and, as `send`, only the declarations "
            "in its `catalog` class attribute: what an agent sends is not known statically.",
        ]
        if self.skipped_exchanges:
            names = ", ".join(e.name for e in self.skipped_exchanges)
            lines += ["", f"Not described: exchanges {names} (this broker has no routing)."]
        return "\n".join(lines)


def _doc(thing: object) -> str:
    """The first paragraph of a docstring, on one line."""
    doc = getattr(thing, "__doc__", None)  # not inspect.getdoc: a class would inherit one
    text = inspect.cleandoc(doc) if isinstance(doc, str) else ""
    return " ".join(text.split("\n\n", 1)[0].split())


def _schedule(handler: str, spec: Any) -> dict[str, Any]:
    if isinstance(spec, CronSpec):
        return {
            "handler": handler,
            "cron": spec.expression,
            "tz": spec.tz.key if spec.tz is not None else None,
            "timeout": spec.timeout,
        }
    assert isinstance(spec, PeriodicSpec)
    return {
        "handler": handler,
        "period": spec.period,
        "start_after": spec.start_after,
        "jitter": spec.jitter,
        "timeout": spec.timeout,
    }


__all__ = ["declarations", "describe"]

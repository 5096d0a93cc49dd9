"""Where each engine puts a signal, a queue and an exchange, for one URL.

Names come from the transports' own option parsers (``RedisOptions.signal_channel``,
``AmqpOptions.queue``, ``NatsOptions.stream``, ``KafkaOptions.topic``...), so a ``prefix`` or
``group`` in the URL shows exactly as the engine will use it. Bindings objects follow the
AsyncAPI bindings specifications where the engine has fields microhive uses (AMQP 0.3.0,
Kafka 0.5.0); Redis's bindings are reserved and NATS's only name a core queue group, which
microhive does not use, so those engines' specifics go into ``x-microhive`` extensions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ..declarations import Exchange, Queue
from ..errors import ConfigurationError
from ..urls import redact, resolve, scheme_of

AMQP = "0.3.0"
KAFKA = "0.5.0"

_PROTOCOLS = {
    "redis": "redis",
    "rediss": "redis",
    "redis+unix": "redis",
    "redis+sentinel": "redis",
    "amqp": "amqp",
    "amqps": "amqps",
    "nats": "nats",
    "tls": "nats",
    "kafka": "kafka",
}


@dataclass
class Channel:
    """One channel's engine part: its address, bindings and extension fields."""

    address: str | None
    bindings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


class Engine:
    """The memory transport: names are the declared names, and there is no server."""

    protocol = "memory"

    def __init__(self, url: str, role: str) -> None:
        self.url = url
        self.role = role
        self.routing = bool(resolve(url, "broker").capabilities.routing)

    def server(self) -> dict[str, Any] | None:
        return None

    def signal(self, name: str) -> Channel:
        return Channel(name)

    def queue(self, queue: Queue) -> Channel:
        return Channel(queue.name)

    def exchange(self, exchange: Exchange, queues: list[Queue]) -> Channel:
        return Channel(exchange.name)

    def replies(self) -> Channel:
        return Channel(None, extra={"reply_to": "the calling bus's inbox (in this process)"})

    def send_bindings(self, what: str) -> dict[str, Any]:
        """Operation bindings of a send of a ``"signal"``, ``"queue"`` or ``"exchange"``."""
        return {}

    def consume_bindings(self, queue: Queue, autoack: bool) -> dict[str, Any]:
        return {}

    def message_bindings(self, kind: str) -> dict[str, Any]:
        return {}


class _Remote(Engine):
    def server(self) -> dict[str, Any]:
        parts = urlsplit(self.url)
        host = parts.netloc.rpartition("@")[2] or "localhost"  # never the user info
        server: dict[str, Any] = {
            "host": host,
            "protocol": _PROTOCOLS[scheme_of(self.url)],
            "description": f"microhive {self.role} {_without_query(redact(self.url))}",
        }
        if parts.path and parts.path != "/":
            server["pathname"] = parts.path
        return server


class Redis(_Remote):
    def __init__(self, url: str, role: str) -> None:
        super().__init__(url, role)
        from ..transports.redis.options import parse

        self.options = parse(url)

    def signal(self, name: str) -> Channel:
        return Channel(
            self.options.signal_channel(name),
            extra={"redis": "pub/sub channel: PUBLISH, and every bus SUBSCRIBEs"},
        )

    def queue(self, queue: Queue) -> Channel:
        name = queue.name
        return Channel(
            queue.address or self.options.stream(name),
            extra={
                "redis": "stream; one entry per message, field data = the envelope (XADD)",
                "consumer_group": self.options.group,
                "delayed": self.options.delayed(name),
                "dead_letters": self.options.dead(name),
            },
        )

    def replies(self) -> Channel:
        return Channel(
            None,
            extra={
                "reply_to": "a Redis pub/sub channel; microhive buses use "
                f"{self.options.prefix}reply.<32 hex>"
            },
        )


class Amqp(_Remote):
    def __init__(self, url: str, role: str) -> None:
        super().__init__(url, role)
        from ..transports.amqp.options import parse

        self.options = parse(url)
        path = urlsplit(url).path
        self.vhost = unquote(path[1:]) if len(path) > 1 else "/"

    def _exchange(self, name: str, kind: str) -> dict[str, Any]:
        return {
            "name": name,
            "type": kind,
            "durable": True,
            "autoDelete": False,
            "vhost": self.vhost,
        }

    def signal(self, name: str) -> Channel:
        exchange = self._exchange(self.options.signals_exchange, "topic")
        return Channel(
            name, {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": AMQP}}
        )

    def queue(self, queue: Queue) -> Channel:
        name = queue.address or self.options.queue(queue.name)
        binding = {
            "is": "queue",
            "queue": {
                "name": name,
                "durable": True,
                "exclusive": False,
                "autoDelete": False,
                "vhost": self.vhost,
            },
            "bindingVersion": AMQP,
        }
        extra: dict[str, Any] = {
            "dead_letters": self.options.dead(queue.name),
            "dead_letter_exchange": self.options.dead_letter_exchange,
        }
        if queue.bindings:
            extra["exchange_bindings"] = [
                {"exchange": self.options.exchange(b.exchange.name), "key": b.key}
                for b in queue.bindings
            ]
        return Channel(name, {"amqp": binding}, extra)

    def exchange(self, exchange: Exchange, queues: list[Queue]) -> Channel:
        keys = sorted(
            {b.key for q in queues for b in q.bindings if b.exchange.name == exchange.name}
        )
        parameter: dict[str, Any] = {
            "description": f"the routing key given to publish() ({exchange.type} exchange)"
        }
        if exchange.type == "direct" and keys:
            parameter["enum"] = keys  # any other key is unroutable: publish raises
        elif exchange.type == "topic" and keys:
            parameter["description"] += "; bound patterns: " + ", ".join(keys)
        binding = {
            "is": "routingKey",
            "exchange": self._exchange(self.options.exchange(exchange.name), exchange.type),
            "bindingVersion": AMQP,
        }
        return Channel("{routing_key}", {"amqp": binding}, parameters={"routing_key": parameter})

    def replies(self) -> Channel:
        binding = {
            "is": "routingKey",
            "exchange": {"name": "", "type": "default", "vhost": self.vhost},
            "bindingVersion": AMQP,
        }
        extra = {
            "reply_to": "a queue name, published to through the default exchange; microhive "
            f"buses use their exclusive queue {self.options.prefix}microhive:bus:<32 hex>"
        }
        return Channel(None, {"amqp": binding}, extra)

    def send_bindings(self, what: str) -> dict[str, Any]:
        if what == "signal":  # signals and calls carry only content_type and delivery_mode
            binding = {"deliveryMode": 1, "mandatory": False, "timestamp": False}
        else:
            binding = {"deliveryMode": 2, "mandatory": True, "timestamp": True}
        return {"amqp": {**binding, "bindingVersion": AMQP}}

    def consume_bindings(self, queue: Queue, autoack: bool) -> dict[str, Any]:
        return {"amqp": {"ack": not autoack, "bindingVersion": AMQP}}

    def message_bindings(self, kind: str) -> dict[str, Any]:
        if kind != "message":  # the bus's messages have no type property
            return {}
        return {"amqp": {"messageType": kind, "bindingVersion": AMQP}}


class Nats(_Remote):
    def __init__(self, url: str, role: str) -> None:
        super().__init__(url, role)
        from ..transports.nats.options import parse

        self.options = parse(url)

    def signal(self, name: str) -> Channel:
        return Channel(self.options.signal_subject(name), extra={"nats": "core NATS subject"})

    def queue(self, queue: Queue) -> Channel:
        name = queue.name
        return Channel(
            queue.address or self.options.queue_subject(name),
            extra={
                "nats": "JetStream stream, read through one durable pull consumer",
                "stream": self.options.stream(name),
                "durable_consumer": self.options.durable,
                "retry_subject": self.options.retry_subject(name),
                "dead_letters": self.options.dead_subject(name),
                "dead_letter_stream": self.options.dead_stream(name),
            },
        )

    def replies(self) -> Channel:
        return Channel(
            None,
            extra={
                "reply_to": "a NATS subject; microhive buses use "
                f"{self.options.prefix}.reply.<32 hex>"
            },
        )


class Kafka(_Remote):
    def __init__(self, url: str, role: str) -> None:
        if role == "bus":
            raise ConfigurationError(
                "Kafka carries no signals or calls in microhive: describe the bus with "
                "--bus redis://..., amqp://... or nats://... and the broker with --broker kafka://"
            )
        super().__init__(url, role)
        from ..transports.kafka.options import parse

        self.options = parse(url)

    def queue(self, queue: Queue) -> Channel:
        topic = queue.address or self.options.topic(queue.name)
        binding = {
            "topic": topic,
            "partitions": int(self.options.partitions),
            "replicas": int(self.options.replication),
            "bindingVersion": KAFKA,
        }
        extra = {
            "delay_topic": self.options.delay_topic(queue.name),
            "dead_letters": self.options.dead_topic(queue.name),
        }
        return Channel(topic, {"kafka": binding}, extra)

    def consume_bindings(self, queue: Queue, autoack: bool) -> dict[str, Any]:
        group = {"type": "string", "enum": [self.options.group_id(queue.name)]}
        return {"kafka": {"groupId": group, "bindingVersion": KAFKA}}


_ENGINES: dict[str, type[Engine]] = {
    "memory": Engine,
    "redis": Redis,
    "amqp": Amqp,
    "amqps": Amqp,
    "nats": Nats,
    "kafka": Kafka,
}


def engine(url: str, role: str) -> Engine:
    """The engine behind ``url`` as ``role`` (``"bus"`` or ``"broker"``); a clear error for
    an unknown scheme or a missing extra, as ``microhive run`` gives."""
    scheme = scheme_of(url)
    resolve(url, "bus" if role == "bus" and scheme != "kafka" else "broker")
    return _ENGINES[_PROTOCOLS.get(scheme, "memory")](url, role)


def _without_query(url: str) -> str:
    return url.partition("?")[0]

"""What the document says: addresses per engine and URL, operations, schemas, envelopes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from microhive.asyncapi import describe
from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind
from microhive.errors import ConfigurationError
from microhive.transports.nats import NatsBus
from microhive.transports.redis import RedisBus

from . import agents
from .official import check, payload_validator

TRANSPORTS = [
    ("memory://", "memory://"),
    (
        "redis://app:s3cret-pw@127.0.0.1:6379/2?prefix=app:",
        "redis://app:s3cret-pw@127.0.0.1:6379/2",
    ),
    ("rediss://app:s3cret-pw@redis.example:6380/0", "redis+unix:///run/redis.sock?db=1"),
    ("amqp://feed:s3cret-pw@rabbit.example:5672/portal?prefix=t.", "amqps://feed:s3cret-pw@r/%2F"),
    ("nats://s3cret-pw@127.0.0.1:4222?prefix=app", "nats://127.0.0.1:4222?durable=billing"),
    ("tls://user:s3cret-pw@n1.example,n2.example", "kafka://k1:9092,k2:9092?prefix=k&group=g"),
]


def doc(bus: str = "memory://", broker: str = "memory://") -> dict[str, Any]:
    return describe(agents.AGENTS, agents.CATALOG, bus=bus, broker=broker)


@pytest.mark.parametrize(("bus", "broker"), TRANSPORTS)
def test_valid_on_every_engine_and_no_secret_shown(bus: str, broker: str) -> None:
    found = doc(bus, broker)
    check(found)
    assert "s3cret-pw" not in json.dumps(found)


def test_one_channel_per_declaration() -> None:
    assert set(doc()["channels"]) == {
        *(f"signal.{n}" for n in ("user_enter", "check_user", "order_placed", "registered")),
        *(f"queue.{n}" for n in ("orders", "sms", "email", "reports")),
        *(f"exchange.{n}" for n in ("notify", "audit", "mailroom")),
        "replies",
    }


def test_memory_addresses_are_the_names_without_servers_or_bindings() -> None:
    found = doc()
    assert "servers" not in found
    assert found["channels"]["signal.user_enter"]["address"] == "user_enter"
    assert found["channels"]["queue.orders"]["address"] == "orders"
    assert not any("bindings" in channel for channel in found["channels"].values())


def test_redis_addresses_follow_the_url() -> None:
    url = "redis://127.0.0.1:6379/0?prefix=app:&group=billing"
    found = doc(url, url)
    signal = found["channels"]["signal.user_enter"]
    assert signal["address"] == "app:signal:user_enter" == RedisBus(url).channel("user_enter")
    queue = found["channels"]["queue.orders"]
    assert queue["address"] == "app:queue:orders"
    assert queue["x-microhive"]["consumer_group"] == "billing"
    assert queue["x-microhive"]["dead_letters"] == "app:queue:orders:dead"
    assert found["channels"]["replies"]["address"] is None
    assert found["servers"] == {
        "transport": {
            "host": "127.0.0.1:6379",
            "protocol": "redis",
            "description": "microhive bus redis://127.0.0.1:6379/0 and broker",
            "pathname": "/0",
        }
    }
    assert not any(name.startswith("exchange.") for name in found["channels"])  # no routing
    assert "exchanges audit, mailroom, notify" in found["info"]["description"]


def test_amqp_exchanges_queues_and_routing_keys() -> None:
    found = doc("amqp://h/portal?prefix=t.", "amqp://h/portal?prefix=t.")
    signal = found["channels"]["signal.user_enter"]
    assert signal["address"] == "user_enter"  # the routing key
    assert signal["bindings"]["amqp"]["exchange"] == {
        "name": "t.microhive:signals",
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "portal",
    }
    queue = found["channels"]["queue.email"]
    assert queue["address"] == "t.email"
    assert queue["bindings"]["amqp"]["is"] == "queue"
    assert queue["x-microhive"]["exchange_bindings"] == [
        {"exchange": "t.notify", "key": "app.email.*"},
        {"exchange": "t.mailroom", "key": "mail"},
        {"exchange": "t.mailroom", "key": "post"},
    ]
    direct = found["channels"]["exchange.mailroom"]
    assert direct["address"] == "{routing_key}"
    assert direct["parameters"]["routing_key"]["enum"] == ["mail", "post"]
    assert direct["bindings"]["amqp"]["exchange"]["name"] == "t.mailroom"
    topic = found["channels"]["exchange.notify"]
    assert "app.email.*, app.sms.#" in topic["parameters"]["routing_key"]["description"]
    sends = found["operations"]["Shop.sends.queue.reports"]["bindings"]["amqp"]
    assert (sends["deliveryMode"], sends["mandatory"]) == (2, True)
    signal_sends = found["operations"]["Shop.sends.signal.order_placed"]["bindings"]["amqp"]
    assert signal_sends["deliveryMode"] == 1
    assert found["operations"]["Shop.take"]["bindings"]["amqp"]["ack"] is True
    assert found["operations"]["Notifier.text"]["bindings"]["amqp"]["ack"] is False  # autoack
    messages = found["components"]["messages"]
    assert messages["queue.orders"]["bindings"]["amqp"]["messageType"] == "message"
    assert "bindings" not in messages["call.check_user"]  # the bus sets no type property


def test_nats_subjects_and_streams() -> None:
    url = "nats://127.0.0.1:4222?prefix=app&durable=billing"
    found = doc(url, url)
    signal = found["channels"]["signal.user_enter"]
    assert signal["address"] == "app.signal.user_enter" == NatsBus(url).subject("user_enter")
    queue = found["channels"]["queue.orders"]
    assert queue["address"] == "app.queue.orders"
    assert queue["x-microhive"]["stream"] == "app_queue_orders"
    assert queue["x-microhive"]["durable_consumer"] == "billing"


def test_kafka_topics_and_groups_with_a_nats_bus() -> None:
    found = doc("nats://n:4222", "kafka://k:9092?prefix=k&group=g&partitions=6&replication=2")
    queue = found["channels"]["queue.orders"]
    assert queue["address"] == "k.queue.orders"
    assert queue["bindings"]["kafka"] == {
        "topic": "k.queue.orders",
        "partitions": 6,
        "replicas": 2,
        "bindingVersion": "0.5.0",
    }
    group = found["operations"]["Shop.take"]["bindings"]["kafka"]["groupId"]
    assert group == {"type": "string", "enum": ["k.group.g.orders"]}
    assert found["servers"]["broker"]["protocol"] == "kafka"


def test_kafka_is_refused_as_the_bus_of_signals() -> None:
    with pytest.raises(ConfigurationError, match="Kafka carries no signals"):
        doc("kafka://k:9092", "kafka://k:9092")
    queues_only = describe([], agents.Catalog(agents.Namespace(kind="signal"), agents.Namespace(
        [agents.orders], kind="queue")), bus="kafka://k", broker="kafka://k")  # fmt: skip
    check(queues_only)
    assert list(queues_only["channels"]) == ["queue.orders"]


def test_operations_per_agent() -> None:
    found = doc()
    operations = found["operations"]
    assert set(operations) == {
        "Shop.check.check_user",
        "Shop.take",
        "Shop.sends.signal.order_placed",
        "Shop.sends.queue.reports",
        "Notifier.hello.user_enter",
        "Notifier.hello.order_placed",
        "Notifier.text",
        "Notifier.mails",
    }
    receive = operations["Shop.check.check_user"]
    assert receive["action"] == "receive"
    assert receive["channel"] == {"$ref": "#/channels/signal.check_user"}
    assert receive["reply"]["address"]["location"] == "$message.payload#/reply_to"
    assert receive["reply"]["messages"] == [
        {"$ref": "#/channels/replies/messages/reply.check_user"}
    ]
    assert receive["tags"] == [{"name": "Shop"}]
    take = operations["Shop.take"]
    assert take["summary"] == "Stores one order."
    assert take["x-microhive"]["concurrency"] == 4
    assert operations["Notifier.mails"]["x-microhive"]["batch"] == 10
    assert operations["Shop.sends.signal.order_placed"]["action"] == "send"
    tags = {tag["name"]: tag["description"] for tag in found["info"]["tags"]}
    assert tags["Shop"] == "Takes orders and answers whether a user is known."
    assert tags["Notifier"] == "agent class Notifier"  # not MicroAgent's inherited docstring
    schedules = found["x-microhive-agents"]["Shop"]["x-microhive-schedules"]
    assert [s["handler"] for s in schedules] == ["hourly", "tick"]
    assert schedules[0]["cron"] == "0 * * * *" and schedules[0]["tz"] == "Europe/Berlin"
    assert schedules[1]["period"] == 5.0


def test_pydantic_schemas_become_components() -> None:
    found = doc()
    schemas = found["components"]["schemas"]
    assert "$defs" not in json.dumps(found)
    assert schemas["Order"]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/Item"}
    addresses = [s for s in schemas.values() if s.get("title") == "Address"]
    assert sorted(sorted(s["properties"]) for s in addresses) == [
        ["city", "zip"],
        ["number", "street"],
    ]
    assert schemas["arguments.user_enter"] == {
        "type": "object",
        "title": "user_enter arguments",
        "properties": {"name": {}},
        "required": ["name"],
        "additionalProperties": False,
    }


def wire(envelope: Envelope) -> Any:
    """An envelope as microhive puts it on the wire, decoded as any JSON reader would."""
    return json.loads(JsonCodec().encode(envelope))


def test_microhive_envelopes_fit_their_messages_and_wrong_ones_do_not() -> None:
    found = doc()

    def errors(message: str, value: Any) -> list[str]:
        return [e.message for e in payload_validator(found, message).iter_errors(value)]

    order = agents.Order(
        id=1, items=[agents.Item(sku="a")], ship_to=agents.Address(city="Oslo"),
        placed_at=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip
    signal = Envelope(Kind.SIGNAL, "user_enter", agents.user_enter.make_payload({"name": "ann"}))
    assert errors("signal.user_enter", wire(signal)) == []
    assert errors("signal.user_enter", wire(Envelope(Kind.SIGNAL, "user_enter", {})))
    assert errors(
        "signal.user_enter", wire(Envelope(Kind.SIGNAL, "user_enter", {"name": 1, "x": 2}))
    )
    assert errors("signal.user_enter", wire(Envelope(Kind.SIGNAL, "check_user", {"name": "a"})))
    placed = agents.order_placed.make_payload(order.model_dump())
    assert errors("signal.order_placed", wire(Envelope(Kind.SIGNAL, "order_placed", placed))) == []
    call = Envelope(Kind.CALL, "check_user", {"user": "ann"}, "me", reply_to="reply.1")
    call.correlation_id = call.id
    assert errors("call.check_user", wire(call)) == []
    assert errors("call.check_user", wire(Envelope(Kind.CALL, "check_user", {"user": "ann"})))
    for payload in (
        {"ok": True, "value": [1]},
        {"ok": False, "error": {"type": "E", "message": ""}},
    ):
        reply = Envelope(Kind.REPLY, "check_user", payload, correlation_id="c")
        assert errors("reply.check_user", wire(reply)) == []
    assert errors(
        "reply.check_user",
        wire(Envelope(Kind.REPLY, "check_user", {"value": 1}, correlation_id="c")),
    )
    message = Envelope(Kind.MESSAGE, "orders", agents.orders.make_payload(order))
    assert errors("queue.orders", wire(message)) == []
    assert errors("queue.orders", wire(Envelope(Kind.MESSAGE, "orders", {"id": "x"})))
    assert errors("queue.reports", wire(Envelope(Kind.MESSAGE, "reports", [1, "any"]))) == []
    routed = Envelope(Kind.MESSAGE, "notify", {"to": "+4"}, headers={"x-routing-key": "app.sms.x"})
    assert errors("exchange.notify", wire(routed)) == []
    assert errors("exchange.notify", wire(Envelope(Kind.MESSAGE, "notify", {})))
    assert errors("queue.reports", {"kind": "message", "name": "reports"}) == []  # the smallest
    assert errors("queue.reports", {"kind": "message", "name": "reports", "v": 2})


def test_conflicting_declarations_are_refused() -> None:
    from microhive import Exchange, Queue, Signal, private_catalog

    with private_catalog():
        other = Signal("user_enter", ["name", "at"])
    catalog = agents.Catalog(
        agents.Namespace([other], kind="signal"), agents.Namespace(kind="queue")
    )
    with pytest.raises(ConfigurationError, match="conflicting declarations of signal 'user_enter'"):
        describe(agents.AGENTS, catalog)
    with private_catalog():
        fanout = Queue("fanned", bindings=[Exchange("notify", "fanout")])
    catalog = agents.Catalog(
        agents.Namespace(kind="signal"), agents.Namespace([fanout], kind="queue")
    )
    with pytest.raises(ConfigurationError, match="conflicting declarations of exchange 'notify'"):
        describe(agents.AGENTS, catalog)

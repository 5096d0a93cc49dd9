"""On the real engines: what microhive sends is found at the document's addresses and fits
the document's message schemas, and a plain client that follows the document alone can call
an agent and gets a reply that fits too."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import aio_pika
import nats
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition

from microhive import Namespace, QueueBroker, SignalBus
from microhive.asyncapi import describe
from microhive.envelope import new_id
from microhive.transports.kafka.options import parse as kafka_parse

from .. import engines
from ..amqp import server as amqp_server
from . import agents
from .official import check, payload_validator

SIGNALS = Namespace([agents.user_enter, agents.check_user], kind="signal")
QUEUES = Namespace([agents.orders, agents.sms], kind="queue")
ORDER = agents.Order(
    id=7,
    items=[agents.Item(sku="tea", quantity=2)],
    ship_to=agents.Address(city="Oslo"),
    placed_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
)


def fits(document: dict[str, Any], message: str, value: Any) -> None:
    errors = [e.message for e in payload_validator(document, message).iter_errors(value)]
    assert errors == [], f"{message}: {errors}"


async def next_on(pubsub: Any, channel: str) -> Any:
    """The next message published on ``channel`` (the test fails after 10 s without one)."""
    async with asyncio.timeout(10):
        while True:
            found = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if found and found["channel"].decode() == channel:
                return json.loads(found["data"])


async def test_redis(tmp_path: Any) -> None:
    base = engines.require_redis()
    prefix = f"microhive-test.{new_id()[:10]}:"
    url = engines.with_query(base, prefix=prefix)
    document = describe(agents.AGENTS, agents.CATALOG, bus=url, broker=url)
    check(document)
    channels = document["channels"]
    client = aioredis.Redis.from_url(base)
    pubsub = client.pubsub()
    bus = SignalBus.from_url(url, signals=SIGNALS)
    broker = QueueBroker.from_url(url, queues=QUEUES)
    shop = agents.Shop(bus, broker)
    try:
        await pubsub.subscribe(channels["signal.user_enter"]["address"], f"{prefix}my-replies")
        await bus.connect()
        await broker.connect()
        await bus.user_enter.send("door", name="ann")
        fits(document, "signal.user_enter", await next_on(pubsub, f"{prefix}signal:user_enter"))

        await broker.orders.send(ORDER, sender="till")
        entries = await client.xrange(channels["queue.orders"]["address"])
        assert len(entries) == 1
        fits(document, "queue.orders", json.loads(entries[0][1][b"data"]))

        await shop.start()
        call = {
            "v": 1,
            "id": "c0ffee00c0ffee00c0ffee00c0ffee00",
            "kind": "call",
            "name": "check_user",
            "sender": "plain-client",
            "payload": {"user": "ann"},
            "correlation_id": "c0ffee00c0ffee00c0ffee00c0ffee00",
            "reply_to": f"{prefix}my-replies",
        }
        fits(document, "call.check_user", call)
        await client.publish(channels["signal.check_user"]["address"], json.dumps(call))
        reply = await next_on(pubsub, f"{prefix}my-replies")
        fits(document, "reply.check_user", reply)
        assert reply["payload"] == {"ok": True, "value": True}
        assert reply["correlation_id"] == call["correlation_id"]
    finally:
        await shop.stop()
        await bus.close()
        await broker.close()
        await pubsub.aclose()
        await client.aclose()
        await engines.delete_prefix(base, prefix)


async def test_amqp() -> None:
    amqp_server.require_amqp()
    url = amqp_server.contract_url(f"a{new_id()[:10]}")
    document = describe(agents.AGENTS, agents.CATALOG, bus=url, broker=url)
    check(document)
    channels = document["channels"]
    signal_send = document["operations"]["Shop.sends.signal.order_placed"]["bindings"]["amqp"]
    queue_send = document["operations"]["Shop.sends.queue.reports"]["bindings"]["amqp"]
    connection = await aio_pika.connect(url.split("?", 1)[0])
    bus = SignalBus.from_url(url, signals=SIGNALS)
    broker = QueueBroker.from_url(url, queues=QUEUES)
    try:
        channel = await connection.channel()
        await bus.connect()  # declares the signals exchange
        signal = channels["signal.user_enter"]
        exchange = await channel.get_exchange(signal["bindings"]["amqp"]["exchange"]["name"])
        listener = await channel.declare_queue(exclusive=True)
        await listener.bind(exchange, routing_key=signal["address"])
        await bus.user_enter.send("door", name="ann")
        async with asyncio.timeout(10):
            async with listener.iterator() as received:
                async for message in received:
                    await message.ack()
                    break
        fits(document, "signal.user_enter", json.loads(message.body))
        assert message.delivery_mode == signal_send["deliveryMode"]
        assert (message.timestamp is not None) is signal_send["timestamp"]

        await broker.connect()
        await broker.orders.send(ORDER, sender="till")
        queue = channels["queue.orders"]["bindings"]["amqp"]["queue"]["name"]
        got = await (await channel.get_queue(queue)).get(timeout=10)
        fits(document, "queue.orders", json.loads(got.body))
        bindings = document["components"]["messages"]["queue.orders"]["bindings"]["amqp"]
        assert got.type == bindings["messageType"]
        assert got.delivery_mode == queue_send["deliveryMode"]
        assert (got.timestamp is not None) is queue_send["timestamp"]
        await got.ack()

        await broker.publish(agents.notify, {"to": "+47"}, routing_key="app.sms.no")
        sms = channels["queue.sms"]["bindings"]["amqp"]["queue"]["name"]
        routed = await (await channel.get_queue(sms)).get(timeout=10)
        fits(document, "exchange.notify", json.loads(routed.body))
        await routed.ack()
        await (await channel.get_queue(queue)).delete(if_unused=False, if_empty=False)
    finally:
        await bus.close()
        await broker.close()
        await connection.close()


async def test_nats() -> None:
    prefix = f"t{new_id()[:10]}"
    url = engines.with_query(engines.require_nats(), prefix=prefix)
    document = describe(agents.AGENTS, agents.CATALOG, bus=url, broker=url)
    check(document)
    channels = document["channels"]
    plain = await nats.connect(engines.NATS_URL)
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    bus = SignalBus.from_url(url, signals=SIGNALS)
    broker = QueueBroker.from_url(url, queues=QUEUES)
    shop = agents.Shop(bus, broker)
    try:
        for subject in (channels["signal.user_enter"]["address"], f"{prefix}.my-replies"):
            await plain.subscribe(subject, cb=inbox.put)
        await plain.flush()
        await bus.connect()
        await broker.connect()
        await bus.user_enter.send("door", name="ann")
        async with asyncio.timeout(10):
            fits(document, "signal.user_enter", json.loads((await inbox.get()).data))

        queue = channels["queue.orders"]
        await broker.orders.send(ORDER, sender="till")
        stored = await plain.jetstream().get_msg(
            queue["x-microhive"]["stream"], subject=queue["address"]
        )
        fits(document, "queue.orders", json.loads(stored.data))

        await shop.start()
        call = {
            "kind": "call",
            "name": "check_user",
            "id": "c0ffee",
            "payload": {"user": "bob"},
            "correlation_id": "c0ffee",
            "reply_to": f"{prefix}.my-replies",
        }
        fits(document, "call.check_user", call)
        await plain.publish(channels["signal.check_user"]["address"], json.dumps(call).encode())
        async with asyncio.timeout(10):
            reply = json.loads((await inbox.get()).data)
        fits(document, "reply.check_user", reply)
        assert reply["correlation_id"] == "c0ffee" and reply["payload"]["ok"] is True
    finally:
        await shop.stop()
        await bus.close()
        await broker.close()
        for stream in (f"{prefix}_queue_orders", f"{prefix}_queue_sms"):
            with contextlib.suppress(Exception):
                await plain.jetstream().delete_stream(stream)
        await plain.close()


async def test_kafka() -> None:
    prefix = f"t{new_id()[:10]}"
    url = engines.with_query(engines.require_kafka(), prefix=prefix, partitions=2)
    document = describe([agents.Shop], bus=engines.NATS_URL, broker=url)
    check(document)
    binding = document["channels"]["queue.orders"]["bindings"]["kafka"]
    broker = QueueBroker.from_url(url, queues=QUEUES)
    reader = AIOKafkaConsumer(bootstrap_servers=kafka_parse(url).bootstrap)
    try:
        await broker.connect()
        await broker.orders.send(ORDER, sender="till")
        await reader.start()
        assert binding["topic"] in await reader.topics()  # also fetches its metadata
        partitions = reader.partitions_for_topic(binding["topic"]) or set()
        assert len(partitions) == binding["partitions"]
        assigned = [TopicPartition(binding["topic"], p) for p in sorted(partitions)]
        reader.assign(assigned)
        await reader.seek_to_beginning(*assigned)
        records: list[Any] = []
        async with asyncio.timeout(10):
            while not records:
                fetched = await reader.getmany(*assigned, timeout_ms=1000)
                records = [record for batch in fetched.values() for record in batch]
        assert len(records) == 1
        fits(document, "queue.orders", json.loads(records[0].value))
    finally:
        await reader.stop()
        await broker.close()

"""Routing: queues bound to direct, fanout and topic exchanges; producers publish with keys.

Transports with the ``routing`` capability route as AMQP 0-9-1 does; the others must refuse
clearly (CapabilityError) rather than drop or misroute.
"""

from __future__ import annotations

import asyncio

import pytest

from microhive import (
    Binding,
    CapabilityError,
    Exchange,
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    QueueBroker,
    UnknownNameError,
    UnroutableError,
    consumer,
    current_message,
)

from .conftest import Factory
from .helpers import eventually

NOTIFY = Exchange("notify", "topic")
BROADCAST = Exchange("broadcast", "fanout")
TASKS = Exchange("tasks", "direct")

ROUTED = Namespace(
    [
        Queue("sms", bindings=[(NOTIFY, "app.notification.sms.#")]),
        Queue("push", bindings=[(NOTIFY, "app.notification.push.*")]),
        Queue("audit", bindings=[(NOTIFY, "#"), (BROADCAST, ""), (TASKS, "audit")]),
        Queue("mail", bindings=[Binding(BROADCAST), (TASKS, "mail"), (TASKS, "urgent")]),
        Queue("urgent", bindings=[(TASKS, "urgent")]),
        Queue("twice", bindings=[(NOTIFY, "app.#"), (NOTIFY, "*.notification.#")]),
    ],
    kind="queue",
)


async def routed_broker(factory: Factory) -> QueueBroker:
    broker = await factory.broker(queues=ROUTED)
    if not broker.capabilities.routing:
        pytest.skip("transport has no routing: covered by test_routing_is_refused_clearly")
    return broker


async def drain(broker: QueueBroker, queue: str, expect: int, timeout: float = 5.0) -> list:
    """Take ``expect`` messages of ``queue`` (acking them), then check nothing else is there."""
    taker = await broker.consume(queue, prefetch=max(1, expect), name="Drain.00000000")
    got = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < expect:
                delivery = await taker.get()
                assert delivery.envelope is not None
                got.append(delivery.envelope)
                await delivery.ack()
        await asyncio.sleep(0.05)
    finally:
        await taker.close()
    assert await broker.queue(queue).length() == 0, f"{queue} got more than {expect}"
    return got


async def test_topic_binding_keys(factory: Factory) -> None:
    broker = await routed_broker(factory)
    await broker.publish(NOTIFY, {"to": "+1"}, routing_key="app.notification.sms.ru")
    await broker.publish(NOTIFY, {"to": "+2"}, routing_key="app.notification.sms")
    await broker.publish(NOTIFY, {"to": "dev"}, routing_key="app.notification.push.ios")
    await broker.publish(NOTIFY, {"to": "x"}, routing_key="app.notification.push.ios.beta")
    sms = await drain(broker, "sms", 2)
    assert [m.payload["to"] for m in sms] == ["+1", "+2"]
    push = await drain(broker, "push", 1)
    assert push[0].payload == {"to": "dev"}
    await drain(broker, "audit", 4)


async def test_a_queue_gets_a_message_once_however_many_bindings_match(factory: Factory) -> None:
    broker = await routed_broker(factory)
    await broker.publish(NOTIFY, {"n": 1}, routing_key="app.notification.sms.ru")
    [message] = await drain(broker, "twice", 1)
    assert message.payload == {"n": 1}


async def test_fanout_reaches_every_bound_queue_whatever_the_key(factory: Factory) -> None:
    broker = await routed_broker(factory)
    await broker.publish(BROADCAST, {"all": True}, routing_key="ignored")
    for queue in ("audit", "mail"):
        [message] = await drain(broker, queue, 1)
        assert message.payload == {"all": True}
    assert await broker.queue("sms").length() == 0


async def test_direct_routes_by_equal_key(factory: Factory) -> None:
    broker = await routed_broker(factory)
    await broker.publish(TASKS, {"k": "urgent"}, routing_key="urgent")
    await broker.publish(TASKS, {"k": "mail"}, routing_key="mail")
    assert [m.payload["k"] for m in await drain(broker, "mail", 2)] == ["urgent", "mail"]
    assert [m.payload["k"] for m in await drain(broker, "urgent", 1)] == ["urgent"]
    assert await broker.queue("audit").length() == 0


async def test_unroutable_publish_raises_at_the_sender(factory: Factory) -> None:
    broker = await routed_broker(factory)
    with pytest.raises(UnroutableError, match="tasks"):
        await broker.publish(TASKS, {"k": 1}, routing_key="nobody")
    lonely = Exchange("lonely", "fanout")
    with pytest.raises(UnroutableError, match="lonely"):
        await broker.publish(lonely, {"k": 1})
    await broker.publish(TASKS, {"k": 2}, routing_key="audit")  # the broker still works
    await drain(broker, "audit", 1)


async def test_exchange_by_name_and_unknown_names(factory: Factory) -> None:
    broker = await routed_broker(factory)
    await broker.publish("tasks", {"k": 1}, routing_key="urgent")
    await drain(broker, "urgent", 1)
    with pytest.raises(UnknownNameError, match="nope"):
        await broker.publish("nope", {"k": 1})
    with pytest.raises(PayloadError, match="routing key"):
        await broker.publish(TASKS, {"k": 1}, routing_key="x" * 256)


async def test_a_routed_message_reaches_the_consumer_with_its_key(factory: Factory) -> None:
    seen = []

    class Texter(MicroAgent):
        @consumer(ROUTED.sms, concurrency=2)
        async def send_sms(self, to):
            message = current_message()
            assert message is not None
            seen.append((to, message.headers["x-routing-key"], message.sender, message.name))

    class Notifier(MicroAgent):
        catalog = None

    broker = await routed_broker(factory)
    producer = Notifier(broker=await factory.broker(queues=ROUTED))
    async with Texter(broker=broker):
        await producer.broker.publish(NOTIFY, {"to": "+7"}, routing_key="app.notification.sms.ru")
        await eventually(lambda: seen)
    assert seen == [("+7", "app.notification.sms.ru", "Notifier", "notify")]


async def test_bound_queue_fills_before_its_consumer_starts(factory: Factory) -> None:
    """Publishing declares the catalog's bound queues, so nothing is lost before consumers."""
    broker = await routed_broker(factory)
    for n in range(3):
        await broker.publish(TASKS, {"n": n}, routing_key="urgent")
    assert await broker.queue("urgent").length() == 3
    got = await drain(broker, "urgent", 3)
    assert [m.payload["n"] for m in got] == [0, 1, 2]


async def test_routing_is_refused_clearly(factory: Factory) -> None:
    broker = await factory.broker(queues=ROUTED)
    if broker.capabilities.routing:
        pytest.skip("transport supports routing")
    with pytest.raises(CapabilityError, match="routing"):
        await broker.publish(NOTIFY, {"n": 1}, routing_key="a")
    with pytest.raises(CapabilityError, match="routing"):
        await broker.consume(ROUTED.sms)
    await broker.queue("sms").send({"n": 1})  # a direct send still works
    assert await broker.queue("sms").length() == 1

"""``QueueBroker.stats()`` on every engine: length, consumers, in flight and dead letters.

A figure an engine cannot tell is None (AMQP's and Kafka's in flight, docs/operations.md);
every other figure must follow what really happens to the queue.
"""

from __future__ import annotations

from typing import Any

from microhive import Queue, QueueBroker, QueueStats

from .conftest import QUEUES, Factory, Transport
from .helpers import eventually

UNKNOWN = {"amqp": {"in_flight"}, "kafka": {"in_flight"}}
"""The figures each engine cannot tell (always None there, never None elsewhere)."""


async def figures(broker: QueueBroker, queue: Any, **expected: int) -> QueueStats | None:
    """The stats once every known figure of ``expected`` is as given, else None."""
    found = await broker.stats(queue)
    for name, value in expected.items():
        got = getattr(found, name)
        if got is not None and got != value:
            return None
    return found


def check_unknown(transport: Transport, found: QueueStats) -> None:
    unknown = UNKNOWN.get(transport.name, set())
    for name in ("consumers", "in_flight", "dead_letters"):
        assert (getattr(found, name) is None) == (name in unknown), (name, found)
    assert found.length is not None


async def test_a_fresh_queue_is_all_zero(factory: Factory, transport: Transport) -> None:
    broker = await factory.broker()
    found = await broker.jobs.stats()
    assert found.queue == "jobs"
    check_unknown(transport, found)
    assert (found.length, found.consumers, found.dead_letters) == (0, 0, 0)
    assert found.in_flight in (0, None)
    assert found.as_dict()["queue"] == "jobs"


async def test_consumers_are_counted_while_open(factory: Factory, transport: Transport) -> None:
    broker = await factory.broker()
    first = await broker.consume(QUEUES.jobs)
    second = await broker.consume(QUEUES.jobs)
    found = await eventually(lambda: figures(broker, "jobs", consumers=2), 60)
    check_unknown(transport, found)
    await first.close()
    await second.close()
    await eventually(lambda: figures(broker, "jobs", consumers=0), 60)


async def test_in_flight_and_dead_letters_follow_the_deliveries(
    factory: Factory, transport: Transport
) -> None:
    broker = await factory.broker()
    for n in range(3):
        await broker.jobs.send({"n": n})
    assert await eventually(lambda: figures(broker, "jobs", length=3, in_flight=0), 30)
    consumer = await broker.consume(QUEUES.jobs)
    delivery = await consumer.get()
    found = await eventually(lambda: figures(broker, "jobs", length=3, in_flight=1), 30)
    check_unknown(transport, found)
    await delivery.dead_letter("counted")
    found = await eventually(lambda: figures(broker, "jobs", length=2, dead_letters=1), 30)
    # its slot came free: a consumer that reads ahead (Redis, NATS) now holds the next one
    assert found.in_flight in (0, 1, None)
    await consumer.close()
    assert len(await broker.jobs.dead.list()) == 1


async def test_an_undeclared_queue_has_stats_too(factory: Factory) -> None:
    broker = await factory.broker()
    found = await broker.stats("nobody-declared-this")
    assert (found.queue, found.length, found.dead_letters) == ("nobody-declared-this", 0, 0)
    named = await broker.stats(Queue("given"))
    assert named.queue == "given"

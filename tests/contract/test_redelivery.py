"""Redelivery: what a consumer took and did not settle comes back to another consumer.

A consumer "dies" here by losing its broker connection while it holds deliveries (its
broker is closed without settling them). Transports that keep queues outside the process
(``capabilities.durable``) must then deliver those messages again to another consumer of
the same agent; for the memory transport a dead process takes its queues along, so those
tests do not apply. Contract URLs use a short claim/redelivery time (1 s on Redis).
"""

from __future__ import annotations

import asyncio

import pytest

from microhive import Backoff, MicroAgent, QueueBroker, consumer, current_message

from .conftest import QUEUES, Factory
from .helpers import eventually

REDELIVERY_WITHIN = 15.0


def needs_durable(broker: QueueBroker) -> None:
    if not broker.capabilities.durable:
        pytest.skip(f"{type(broker).__name__} is not durable: a crash loses its queues")


async def test_unsettled_message_of_a_dead_consumer_is_delivered_again(factory: Factory) -> None:
    first = await factory.broker()
    needs_durable(first)
    message_id = await first.jobs.send({"n": 1})
    doomed = await first.consume("jobs", prefetch=1, name="Worker.doomed00")
    taken = await asyncio.wait_for(doomed.get(), 5)
    assert taken.envelope is not None and taken.envelope.id == message_id
    await first.close()  # the connection is gone with the delivery unsettled

    second = await factory.broker()
    survivor = await second.consume("jobs", prefetch=1, name="Worker.alive000")
    again = await asyncio.wait_for(survivor.get(), REDELIVERY_WITHIN)
    assert again.envelope is not None
    assert again.envelope.id == message_id
    assert again.envelope.payload == {"n": 1}
    assert again.envelope.attempt == 1, "a redelivery is not a retry"
    assert await second.jobs.length() == 1
    await again.ack()
    await survivor.close()
    await eventually(lambda: _length_is(second, 0))


async def test_prefetched_messages_of_a_dead_consumer_are_delivered_again(
    factory: Factory,
) -> None:
    first = await factory.broker()
    needs_durable(first)
    sent = [await first.jobs.send({"n": n}) for n in range(5)]
    doomed = await first.consume("jobs", prefetch=5, name="Worker.doomed01")
    await asyncio.wait_for(doomed.get(), 5)  # one in a handler, the rest may be prefetched
    await first.close()

    second = await factory.broker()
    survivor = await second.consume("jobs", prefetch=5, name="Worker.alive001")
    seen = []
    async with asyncio.timeout(REDELIVERY_WITHIN):
        while len(seen) < 5:
            delivery = await survivor.get()
            assert delivery.envelope is not None
            seen.append(delivery.envelope.id)
            await delivery.ack()
    assert sorted(seen) == sorted(sent)
    await survivor.close()
    await eventually(lambda: _length_is(second, 0))


async def test_closing_a_consumer_gives_back_what_it_prefetched(factory: Factory) -> None:
    broker = await factory.broker()
    sent = [await broker.jobs.send({"n": n}) for n in range(4)]
    first = await broker.consume("jobs", prefetch=4, name="Worker.first000")
    taken = await asyncio.wait_for(first.get(), 5)
    await asyncio.sleep(0.1)  # let it prefetch the others
    await first.close()
    assert taken.envelope is not None
    await taken.ack()  # still valid after close

    second = await broker.consume("jobs", prefetch=4, name="Worker.second00")
    rest = []
    async with asyncio.timeout(5):
        while len(rest) < 3:
            delivery = await second.get()
            assert delivery.envelope is not None
            rest.append(delivery.envelope.id)
            await delivery.ack()
    assert sorted([taken.envelope.id, *rest]) == sorted(sent)
    await second.close()
    await eventually(lambda: _length_is(broker, 0))


class Flaky(MicroAgent):
    @consumer(QUEUES.jobs, retries=1, backoff=Backoff(0.5, jitter=0))
    async def job(self, n):
        message = current_message()
        assert message is not None
        self.settings["attempts"].append((n, message.attempt))
        if message.attempt == 1:
            raise ValueError("first attempt fails")


async def test_scheduled_retry_survives_a_restart_of_the_agent(factory: Factory) -> None:
    broker = await factory.broker()
    before = Flaky(broker=broker, settings={"attempts": []})
    async with before:
        await broker.jobs.send({"n": 1})
        await eventually(lambda: before.settings["attempts"] == [(1, 1)])
    assert await broker.jobs.length() == 1, "the retry waits for its backoff"

    after = Flaky(broker=await factory.broker(), settings={"attempts": []})
    async with after:
        await eventually(lambda: after.settings["attempts"] == [(1, 2)])
        await eventually(lambda: _length_is(broker, 0))
    assert await broker.jobs.dead_letters() == []


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.jobs.length() == expected

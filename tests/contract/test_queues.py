"""Messages: competing consumers, ack after the handler, retries, dead letters, bad input."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from pydantic import BaseModel

from microhive import (
    Backoff,
    MicroAgent,
    Namespace,
    PayloadError,
    Queue,
    consumer,
    current_message,
)

from .conftest import QUEUES, Factory
from .helpers import eventually


class Worker(MicroAgent):
    @consumer(QUEUES.jobs, concurrency=4, retries=2, backoff=Backoff(0.05, jitter=0))
    async def job(self, n, fail=0, **kw):
        message = current_message()
        assert message is not None
        self.settings["attempts"].append((n, message.attempt))
        if message.attempt <= fail:
            raise ValueError(f"failing {n}")
        self.settings["done"].append(n)


def worker(broker, **extra):
    return Worker(broker=broker, settings={"attempts": [], "done": [], **extra})


async def test_competing_consumers_split_without_duplicates(factory: Factory) -> None:
    producer = await factory.broker()
    agents = [worker(await factory.broker()) for _ in range(3)]
    for agent in agents:
        await agent.start()
    try:
        for n in range(300):
            await producer.jobs.send({"n": n})
        await eventually(lambda: sum(len(a.settings["done"]) for a in agents) >= 300)
        done = Counter(n for a in agents for n in a.settings["done"])
        assert sorted(done) == list(range(300))
        assert set(done.values()) == {1}
        assert all(a.settings["done"] for a in agents), "every consumer got a share"
        assert await producer.jobs.length() == 0
    finally:
        for agent in agents:
            await agent.stop()


async def test_fifo_with_one_consumer(factory: Factory) -> None:
    order: list[int] = []

    class Ordered(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n):
            order.append(n)

    broker = await factory.broker()
    # on engines that partition a queue, order holds per key: give every message one key
    key = "fifo" if broker.capabilities.partitions else None
    for n in range(100):
        await broker.jobs.send({"n": n}, key=key)
    async with Ordered(broker=broker):
        await eventually(lambda: len(order) == 100)
    assert order == list(range(100))


async def test_ack_only_after_the_handler_returned(factory: Factory) -> None:
    gate = asyncio.Event()
    entered = asyncio.Event()

    class Blocked(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n):
            entered.set()
            await gate.wait()

    broker = await factory.broker()
    async with Blocked(broker=broker):
        await broker.jobs.send({"n": 1})
        await asyncio.wait_for(entered.wait(), 5)
        assert await broker.jobs.length() == 1, "in flight is not yet acknowledged"
        gate.set()
        await eventually(lambda: _length_is(broker, 0))


async def _length_is(broker, expected: int) -> bool:
    return await broker.jobs.length() == expected


async def test_retries_with_backoff_then_succeeds(factory: Factory) -> None:
    broker = await factory.broker()
    agent = worker(broker)
    async with agent:
        await broker.jobs.send({"n": 1, "fail": 2})
        await eventually(lambda: agent.settings["done"] == [1])
    assert agent.settings["attempts"] == [(1, 1), (1, 2), (1, 3)]
    assert await broker.jobs.dead_letters() == []


async def test_exhausted_retries_dead_letter_with_reason(factory: Factory) -> None:
    broker = await factory.broker()
    agent = worker(broker)
    async with agent:
        await broker.jobs.send({"n": 7, "fail": 99})
        letters = await eventually(broker.jobs.dead_letters)
    assert [a for a in agent.settings["attempts"]] == [(7, 1), (7, 2), (7, 3)]
    [letter] = letters
    assert letter.queue == "jobs"
    assert "ValueError: failing 7" in letter.reason and "3 attempts" in letter.reason
    assert letter.attempt == 3
    assert letter.envelope is not None and letter.envelope.payload == {"n": 7, "fail": 99}
    assert await broker.jobs.length() == 0


async def test_timeout_counts_as_failure(factory: Factory) -> None:
    class Sleepy(MicroAgent):
        @consumer(QUEUES.jobs, timeout=0.05, retries=1, backoff=0)
        async def job(self, n):
            await asyncio.sleep(10)

    broker = await factory.broker()
    async with Sleepy(broker=broker):
        await broker.jobs.send({"n": 1})
        [letter] = await eventually(broker.jobs.dead_letters)
    assert "HandlerTimeout" in letter.reason and letter.attempt == 2


async def test_undecodable_message_is_dead_lettered_and_consumer_goes_on(factory: Factory) -> None:
    broker = await factory.broker()
    if not hasattr(broker, "publish_raw"):
        pytest.skip("transport has no raw publish helper")
    agent = worker(broker)
    async with agent:
        await broker.publish_raw("jobs", b"\xff\xfe not json")
        await broker.publish_raw("jobs", b'{"v": 1, "kind": "message"}')  # no name: not valid
        await broker.jobs.send({"n": 2})
        await eventually(lambda: agent.settings["done"] == [2])
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), 2))
    assert all(letter.reason.startswith("undecodable message") for letter in letters)
    # Workers settle concurrently (and keyless messages may take two partitions): the dead
    # letters' order is the order they were dead-lettered in, not the order they were sent.
    [garbage] = [letter for letter in letters if letter.raw == b"\xff\xfe not json"]
    assert garbage.envelope is None


async def _at_least(coroutine, count):
    items = await coroutine
    return items if len(items) >= count else None


async def test_payload_not_fitting_the_handler_is_dead_lettered(factory: Factory) -> None:
    broker = await factory.broker()
    agent = worker(broker)
    async with agent:
        await broker.jobs.send({"wrong": 1})
        await broker.jobs.send({"fail": 1})
        await broker.jobs.send({"n": 3})
        await eventually(lambda: agent.settings["done"] == [3])
        letters = await eventually(lambda: _at_least(broker.jobs.dead_letters(), 2))
    assert all(letter.reason.startswith("invalid payload") for letter in letters)
    assert sum("missing ['n']" in letter.reason for letter in letters) == 2
    assert agent.settings["attempts"] == [(3, 1)], "bad payloads are not retried"


class Order(BaseModel):
    id: int
    amount: float


ORDERS = Namespace([Queue("orders", schema=Order)], kind="queue")


async def test_schema_queue_validates_at_sender_and_passes_a_model(factory: Factory) -> None:
    got: list[Order] = []

    class Shop(MicroAgent):
        @consumer(ORDERS.orders)
        async def order(self, order: Order):
            got.append(order)

    broker = await factory.broker(queues=ORDERS)
    async with Shop(broker=broker):
        await broker.orders.send({"id": 1, "amount": "2.5"})
        await broker.orders.send(Order(id=2, amount=1))
        with pytest.raises(PayloadError, match=r"orders.*amount"):
            await broker.orders.send({"id": 3})
        await eventually(lambda: len(got) == 2)
    if broker.capabilities.partitions:  # keyless messages, maybe two partitions: any order
        got.sort(key=lambda order: order.id)
    assert got == [Order(id=1, amount=2.5), Order(id=2, amount=1.0)]


async def test_concurrency_is_bounded(factory: Factory) -> None:
    running = 0
    peak = 0

    class Bounded(MicroAgent):
        @consumer(QUEUES.jobs, concurrency=3)
        async def job(self, n):
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.02)
            running -= 1

    broker = await factory.broker()
    for n in range(20):
        await broker.jobs.send({"n": n})
    async with Bounded(broker=broker):
        await eventually(lambda: _length_is(broker, 0))
    assert peak == 3


async def test_delayed_send(factory: Factory) -> None:
    broker = await factory.broker()
    agent = worker(broker)
    async with agent:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        await broker.jobs.send({"n": 1}, delay=0.3)
        assert await broker.jobs.length() == 1
        await eventually(lambda: agent.settings["done"] == [1])
        assert loop.time() - sent >= 0.29


async def test_send_rejects_bad_arguments(factory: Factory) -> None:
    broker = await factory.broker()
    with pytest.raises(PayloadError, match="delay"):
        await broker.jobs.send({"n": 1}, delay=-1)
    with pytest.raises(PayloadError, match="headers"):
        await broker.jobs.send({"n": 1}, headers={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(PayloadError, match="not JSON-encodable"):
        await broker.jobs.send({"n": object()})
    assert await broker.jobs.length() == 0


async def test_headers_and_sender_reach_the_handler(factory: Factory) -> None:
    seen = []

    class Meta(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n):
            seen.append(current_message())

    broker = await factory.broker()
    async with Meta(broker=broker):
        message_id = await broker.jobs.send({"n": 1}, headers={"trace": "t1"}, sender="registrar")
        await eventually(lambda: seen)
    assert seen[0].id == message_id
    assert seen[0].headers == {"trace": "t1"} and seen[0].sender == "registrar"


async def test_graceful_stop_lets_in_flight_finish(factory: Factory) -> None:
    finished = []
    started = asyncio.Event()

    class Slow(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n):
            started.set()
            await asyncio.sleep(0.2)
            finished.append(n)

    broker = await factory.broker()
    agent = Slow(broker=broker, grace_period=5)
    await agent.start()
    await broker.jobs.send({"n": 1})
    await eventually(lambda: _length_is(broker, 1))
    await asyncio.wait_for(started.wait(), 30)  # in flight now (a blind sleep raced Kafka)
    await agent.stop()
    assert finished == [1]
    assert await broker.jobs.length() == 0


async def test_stop_after_grace_returns_the_message(factory: Factory) -> None:
    started = asyncio.Event()

    class Stuck(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n):
            started.set()
            await asyncio.sleep(60)

    broker = await factory.broker()
    agent = Stuck(broker=broker, grace_period=0.1)
    await agent.start()
    await broker.jobs.send({"n": 1})
    await asyncio.wait_for(started.wait(), 5)
    await agent.stop()
    assert await broker.jobs.length() == 1, "the unfinished message is back in the queue"
    second = worker(broker)
    async with second:
        await eventually(lambda: second.settings["done"] == [1])


async def test_autoack_is_at_most_once(factory: Factory) -> None:
    calls = []

    class Fire(MicroAgent):
        @consumer(QUEUES.jobs, autoack=True)
        async def job(self, n):
            calls.append(n)
            raise RuntimeError("lost on purpose")

    broker = await factory.broker()
    async with Fire(broker=broker):
        await broker.jobs.send({"n": 1})
        await eventually(lambda: calls == [1])
        await eventually(lambda: _length_is(broker, 0))
    assert await broker.jobs.dead_letters() == []

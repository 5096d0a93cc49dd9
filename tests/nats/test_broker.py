"""What is particular to JetStream queues: the crash-loop limit (max_deliver), the history
kept for replay, delays that outlive their consumer, de-duplicated sends, independent
durable consumers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import nats
import pytest

from microhive import Backoff, MicroAgent, QueueBroker, consumer, current_message
from microhive.errors import ConsumerClosed
from microhive.testing import eventually
from microhive.transports.nats import NatsBroker

from .. import engines
from ..fault_agents import JOBS


async def stream_state(prefix: str, queue: str = "jobs") -> Any:
    client = await nats.connect(engines.NATS_URL)
    try:
        return (await client.jetstream().stream_info(f"{prefix}_queue_{queue}")).state
    finally:
        await client.close()


async def test_a_message_that_keeps_killing_its_consumer_is_dead_lettered(nats_url: str) -> None:
    url = engines.with_query(nats_url, ack_wait=0.3, max_deliver=2)
    first = QueueBroker.from_url(url, queues=[JOBS])
    await first.connect()
    await first.jobs.send({"n": 1})
    await first.close()
    for _ in range(2):  # taken, then the process "dies" with it
        crashing = QueueBroker.from_url(url, queues=[JOBS])
        await crashing.connect()
        taken = await (await crashing.consume("jobs", name="Worker.crash")).get()
        assert taken.envelope is not None and taken.envelope.payload == {"n": 1}
        await crashing.close()
    survivor = QueueBroker.from_url(url, queues=[JOBS])
    async with survivor:
        consumer_ = await survivor.consume("jobs", name="Worker.alive")
        [letter] = await eventually(survivor.jobs.dead_letters, timeout=10)
        assert "delivered 3 times without being settled (max_deliver=2)" in letter.reason
        assert letter.attempt == 1 and letter.envelope is not None
        await eventually(lambda: _length_is(survivor, 0), timeout=5)
        await consumer_.close()


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def test_acknowledged_messages_beyond_history_are_trimmed(nats_url: str, prefix: str) -> None:
    url = engines.with_query(nats_url, history=5, trim_interval=0.2)
    done: list[int] = []

    class Sink(MicroAgent):
        @consumer(JOBS, concurrency=4)
        async def job(self, n: int) -> None:
            done.append(n)

    broker = QueueBroker.from_url(url, queues=[JOBS])
    async with broker, Sink(broker=broker):
        for n in range(30):
            await broker.jobs.send({"n": n})
        await eventually(lambda: len(done) == 30)
        state = await eventually(lambda: _trimmed(prefix), timeout=5)
        assert state.last_seq == 30
        replay = broker.jobs.tail(last=5)
        got = [(await anext(replay)).payload["n"] for _ in range(5)]
        await replay.aclose()  # type: ignore[attr-defined]
    assert got == [25, 26, 27, 28, 29]


async def _trimmed(prefix: str) -> Any:
    state = await stream_state(prefix)
    return state if state.messages <= 5 else None


async def test_unacknowledged_messages_are_never_trimmed(nats_url: str, prefix: str) -> None:
    url = engines.with_query(nats_url, history=0, trim_interval=0.1)
    broker = QueueBroker.from_url(url, queues=[JOBS])
    async with broker:
        for n in range(5):
            await broker.jobs.send({"n": n})
        reader = await broker.consume("jobs", prefetch=5, name="Worker.reader")
        first = await reader.get()
        await first.ack()
        await asyncio.sleep(0.5)  # several trims: none while messages are held
        assert (await stream_state(prefix)).messages == 5
        assert await broker.jobs.length() == 4
        await reader.close()


async def test_a_delay_outlives_the_consumer_that_saw_the_message_early(
    nats_url: str, prefix: str
) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[JOBS])
    async with broker:
        sent = time.time()
        await broker.jobs.send({"n": 1}, delay=3)
        early = await broker.consume("jobs", name="Worker.early")
        getting = asyncio.ensure_future(early.get())
        await eventually(lambda: _delivered(prefix))  # the server sent it to the early one
        await broker.jobs.length()  # an answer on the same connection: the message came first
        assert not getting.done(), "handed out before it was due"
        await early.close()
        with pytest.raises(ConsumerClosed):
            await getting
    assert await _length(nats_url) == 1
    later = QueueBroker.from_url(nats_url, queues=[JOBS])
    async with later:
        reader = await later.consume("jobs", name="Worker.later")
        delivery = await asyncio.wait_for(reader.get(), 30)
        assert time.time() - sent >= 2.95
        await delivery.ack()
        await reader.close()
        await eventually(lambda: _length_is(later, 0))


async def _delivered(prefix: str) -> bool:
    client = await nats.connect(engines.NATS_URL)
    try:
        info = await client.jetstream().consumer_info(f"{prefix}_queue_jobs", "microhive")
        return bool(info.delivered.stream_seq >= 1)
    finally:
        await client.close()


async def _length(url: str) -> int:
    async with QueueBroker.from_url(url, queues=[JOBS]) as broker:
        return await broker.jobs.length()


async def test_retries_carry_their_attempt_and_the_last_error(nats_url: str) -> None:
    seen: list[tuple[int, str | None]] = []

    class Flaky(MicroAgent):
        @consumer(JOBS, retries=2, backoff=Backoff(0.2, jitter=0))
        async def job(self, n: int) -> None:
            message = current_message()
            assert message is not None
            seen.append((message.attempt, message.headers.get("x-last-error")))
            if message.attempt < 3:
                raise RuntimeError(f"try {message.attempt}")

    broker = QueueBroker.from_url(nats_url, queues=[JOBS])
    async with broker, Flaky(broker=broker):
        await broker.jobs.send({"n": 1})
        await eventually(lambda: len(seen) == 3)
        await eventually(lambda: _length_is(broker, 0))
    assert seen == [(1, None), (2, "RuntimeError: try 1"), (3, "RuntimeError: try 2")]


async def test_dedup_stores_a_resent_message_once(nats_url: str, prefix: str) -> None:
    url = engines.with_query(nats_url, dedup="true")
    broker = QueueBroker.from_url(url, queues=[JOBS])
    async with broker:
        assert isinstance(broker, NatsBroker)
        message_id = await broker.jobs.send({"n": 1})
        data = broker.codec.encode(
            __import__("microhive").Envelope(
                __import__("microhive").envelope.Kind.MESSAGE, "jobs", {"n": 1}, id=message_id
            )
        )
        await broker.publish_raw("jobs", data, {"Nats-Msg-Id": f"{message_id}:1"})
        assert (await stream_state(prefix)).messages == 1
        assert await broker.jobs.length() == 1


async def test_another_durable_reads_every_message_and_skips_foreign_retries(
    nats_url: str,
) -> None:
    ours: list[tuple[int, int]] = []
    theirs: list[tuple[int, int]] = []

    def agent(sink: list[tuple[int, int]], fail: bool) -> type[MicroAgent]:
        class Reader(MicroAgent):
            @consumer(JOBS, retries=1, backoff=0)
            async def job(self, n: int) -> None:
                message = current_message()
                assert message is not None
                sink.append((n, message.attempt))
                if fail and message.attempt == 1:
                    raise ValueError("once")

        return Reader

    main = QueueBroker.from_url(nats_url, queues=[JOBS])
    audit = QueueBroker.from_url(engines.with_query(nats_url, durable="audit"), queues=[JOBS])
    async with main, audit, agent(ours, True)(broker=main), agent(theirs, False)(broker=audit):
        await main.jobs.send({"n": 1})
        await eventually(lambda: len(ours) == 2 and len(theirs) == 1)
        await asyncio.sleep(0.3)
    assert ours == [(1, 1), (1, 2)]
    assert theirs == [(1, 1)], "the audit durable does not see main's retry"

"""A requeue SIGKILLed half-way loses no dead letter: each chunk is published (and
acknowledged) before it is marked done, so the kill leaves at most the chunk in flight
requeued twice."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from microhive import Queue, QueueBroker
from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind
from microhive.transports.kafka import KafkaBroker, parse
from microhive.transports.kafka.plain import MARKED
from microhive.transports.kafka.wire import encoded

from ..cli.helpers import Process
from ..processes import ready, until

pytestmark = pytest.mark.slow

LETTERS = 4_000
CHUNK = 200


async def _bury(url: str, queue: str, count: int) -> None:
    """``count`` dead letters of ``queue``, as consumers that rejected them would write."""
    options = parse(url)
    codec = JsonCodec()
    producer = AIOKafkaProducer(bootstrap_servers=options.bootstrap, acks="all")
    await producer.start()
    try:
        sent = []
        for n in range(count):
            value = codec.encode(Envelope(Kind.MESSAGE, queue, {"n": n}))
            headers = MARKED + encoded(
                reason="Reject: broken", attempt="1", queue=queue, dead_at=f"{time.time():.3f}"
            )
            sent.append(await producer.send(options.dead_topic(queue), value, headers=headers))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def _numbers(broker: KafkaBroker, queue: str) -> Counter[int]:
    """Every ``n`` on the queue's topic, counted."""
    topics = broker._topics
    partitions = await topics.partitions(broker.options.topic(queue))
    starts, ends = await topics.bounds(partitions)
    reader = AIOKafkaConsumer(bootstrap_servers=broker.options.bootstrap)
    await reader.start()
    found: Counter[int] = Counter()
    try:
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, starts[tp])
        async with asyncio.timeout(60):
            while any([await reader.position(tp) < ends[tp] for tp in partitions]):
                batch = await reader.getmany(timeout_ms=500)
                for records in batch.values():
                    found.update(orjson.loads(r.value)["payload"]["n"] for r in records)
    finally:
        await reader.stop()
    return found


async def test_sigkill_in_the_middle_of_a_large_requeue_loses_nothing(kafka_url: str) -> None:
    broker = QueueBroker.from_url(kafka_url, queues=[Queue("kjobs"), Queue("ktarget")])
    assert isinstance(broker, KafkaBroker)
    async with broker:
        await broker.declare(["kjobs", "ktarget"])
        await _bury(kafka_url, "kjobs", LETTERS)
        assert len(await broker.dead_letters("kjobs", limit=LETTERS + 1)) == LETTERS

        process = Process("-m", "tests.kafka.requeuer", kafka_url, "kjobs", "ktarget", str(CHUNK))
        try:
            await ready(process, "requeuing")
            await until(lambda: _at_least(broker, "ktarget", 3 * CHUNK), 60, "some chunks requeued")
            assert process.popen.poll() is None, "killed in the middle: " + process.output
            process.popen.send_signal(signal.SIGKILL)
            process.wait(timeout=20)
        finally:
            if process.popen.poll() is None:
                process.popen.kill()
        assert "requeued" not in process.output.replace("requeuing", "")

        left = len(await broker.dead_letters("kjobs", limit=LETTERS + 1))
        assert 0 < left < LETTERS, "the kill came half-way"
        assert await broker.requeue("kjobs", to="ktarget") == left
        assert await broker.dead_letters("kjobs") == []

        found = await _numbers(broker, "ktarget")
        assert set(found) == set(range(LETTERS)), "no dead letter lost"
        duplicates = sum(found.values()) - LETTERS
        print(f"requeue killed with {left} letters left: {duplicates} duplicates")
        assert duplicates <= CHUNK, "at most the chunk in flight is requeued twice"


async def _at_least(broker: QueueBroker, queue: str, count: int) -> bool:
    return await broker.length(queue) >= count

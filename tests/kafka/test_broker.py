"""What is particular to Kafka queues: order per key, commits that never pass an unprocessed
offset, lag as length, independent groups, dead-letter headers, plain producers, errors."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from microhive import Backoff, MicroAgent, QueueBroker, consumer, current_message
from microhive.testing import eventually
from microhive.transports.kafka import KafkaBroker, KafkaDelivery, parse
from microhive.urls import redact

from .. import engines
from ..fault_agents import JOBS
from ..scenarios import KAFKA, recovery


async def broker_for(url: str, **options: object) -> KafkaBroker:
    broker = QueueBroker.from_url(engines.with_query(url, **options), queues=[JOBS])
    assert isinstance(broker, KafkaBroker)
    await broker.connect()
    return broker


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def test_messages_with_one_key_keep_their_order_across_consumers(kafka_url: str) -> None:
    seen: dict[str, list[int]] = defaultdict(list)

    class Ordered(MicroAgent):
        @consumer(JOBS)  # concurrency 1: a partition's messages one after the other
        async def job(self, key: str, n: int) -> None:
            seen[key].append(n)
            await asyncio.sleep(0.001 if n % 7 else 0.01)  # uneven handlers

    producer = await broker_for(kafka_url, partitions=4)
    first, second = await broker_for(kafka_url), await broker_for(kafka_url)
    try:
        async with Ordered(broker=first), Ordered(broker=second):
            sends = [
                producer.jobs.send({"key": key, "n": n}, key=key)
                for n in range(40)
                for key in ("a", "b", "c", "d", "e")
            ]
            for send in sends:  # one after the other: the order a producer means
                await send
            await eventually(lambda: sum(map(len, seen.values())) == 200, timeout=20)
        assert all(numbers == list(range(40)) for numbers in seen.values()), dict(seen)
    finally:
        for broker in (producer, first, second):
            await broker.close()


async def test_commits_never_pass_an_unprocessed_offset(kafka_url: str) -> None:
    """Offsets 0..4 of one partition are read; 0, 1, 3 and 4 finish, 2 is still in a
    handler when the process dies: the commit stops at 2, so 2, 3 and 4 come again (3 and
    4 twice: at least once), and 0 and 1 never."""
    url = engines.with_query(kafka_url, partitions=1)
    broker = await broker_for(url)
    for n in range(5):
        await broker.jobs.send({"n": n})
    held = await broker.consume("jobs", prefetch=5, name="Slow.1")
    deliveries = [await asyncio.wait_for(held.get(), 10) for _ in range(5)]
    assert [d.envelope.payload["n"] for d in deliveries if d.envelope] == [0, 1, 2, 3, 4]
    for index in (0, 1, 3, 4):
        await deliveries[index].ack()
    assert await broker.jobs.length() == 3, "committed up to the unprocessed offset 2"
    await broker.close()  # a crash as far as offset 2 is concerned: never settled

    again = await broker_for(url)
    try:
        survivor = await again.consume("jobs", prefetch=5, name="Slow.2")
        redelivered = []
        for _ in range(3):
            delivery = await asyncio.wait_for(survivor.get(), 15)
            assert isinstance(delivery, KafkaDelivery) and delivery.envelope is not None
            redelivered.append((delivery.offset, delivery.envelope.payload["n"]))
            await delivery.ack()
        assert redelivered == [(2, 2), (3, 3), (4, 4)]
        await eventually(lambda: _length_is(again, 0))
        await survivor.close()
    finally:
        await again.close()


async def test_a_released_message_comes_back_to_the_same_open_consumer(kafka_url: str) -> None:
    broker = await broker_for(engines.with_query(kafka_url, partitions=1))
    try:
        for n in range(3):
            await broker.jobs.send({"n": n})
        reader = await broker.consume("jobs", prefetch=3, name="Seek.1")
        first = [await asyncio.wait_for(reader.get(), 10) for _ in range(3)]
        await first[1].ack()
        await first[2].ack()
        await first[0].release()
        again = await asyncio.wait_for(reader.get(), 10)
        assert isinstance(again, KafkaDelivery) and again.envelope is not None
        assert (again.offset, again.envelope.payload) == (0, {"n": 0}), "only the released one"
        await again.ack()
        await eventually(lambda: _length_is(broker, 0))
        await reader.close()
    finally:
        await broker.close()


async def test_length_is_the_lag_of_the_brokers_group(kafka_url: str) -> None:
    done: list[int] = []

    class Sink(MicroAgent):
        @consumer(JOBS, concurrency=4)
        async def job(self, n: int) -> None:
            done.append(n)

    billing = await broker_for(kafka_url, group="billing")
    audit = await broker_for(kafka_url, group="audit")
    try:
        for n in range(20):
            await billing.jobs.send({"n": n})
        assert await billing.jobs.length() == 20 == await audit.jobs.length()
        async with Sink(broker=billing):
            await eventually(lambda: len(done) == 20)
            await eventually(lambda: _length_is(billing, 0))
        assert await audit.jobs.length() == 20, "another group has read nothing yet"
        await audit.jobs.send({"n": 20}, delay=30)
        assert await audit.jobs.length() == 21, "a delayed message counts until it is moved"
    finally:
        await billing.close()
        await audit.close()


async def test_a_retry_is_for_its_own_group_only(kafka_url: str) -> None:
    """The retry (moved back from the delay topic) is a record on the queue's topic that the
    other group reads past: a later message with the same key, so in the same partition
    behind the retry, reaches it alone."""

    class Flaky(MicroAgent):
        @consumer(JOBS, retries=1, backoff=Backoff(0.05, jitter=0))
        async def job(self, n: int) -> None:
            message = current_message()
            assert message is not None
            self.settings["attempts"].append((n, message.attempt))
            if self.settings["fail"] and message.attempt == 1:
                raise ValueError("once")

    failing = await broker_for(kafka_url, group="failing")
    steady = await broker_for(kafka_url, group="steady")
    a = Flaky(broker=failing, settings={"attempts": [], "fail": True})
    b = Flaky(broker=steady, settings={"attempts": [], "fail": False})
    try:
        async with a, b:
            await failing.jobs.send({"n": 1}, key="k")
            await eventually(lambda: a.settings["attempts"] == [(1, 1), (1, 2)], timeout=10)
            await failing.jobs.send({"n": 2}, key="k")  # behind the retry in the partition
            await eventually(lambda: (2, 1) in b.settings["attempts"], timeout=10)
            await eventually(lambda: (2, 1) in a.settings["attempts"], timeout=10)
        assert b.settings["attempts"] == [(1, 1), (2, 1)], "the other group skipped the retry"
        assert a.settings["attempts"] == [(1, 1), (1, 2), (2, 1)]
    finally:
        await failing.close()
        await steady.close()


async def test_dead_letters_carry_reason_and_attempt_in_record_headers(
    kafka_url: str, prefix: str
) -> None:
    class Failing(MicroAgent):
        @consumer(JOBS, retries=1, backoff=0)
        async def job(self, n: int) -> None:
            raise LookupError(f"no {n}")

    broker = await broker_for(kafka_url)
    try:
        async with Failing(broker=broker):
            sent = time.time()
            await broker.jobs.send({"n": 4}, key="k4")
            [letter] = await eventually(broker.jobs.dead_letters, timeout=10)
        assert letter.attempt == 2 and "LookupError: no 4 (after 2 attempts)" in letter.reason
        assert sent - 0.01 <= letter.dead_at <= time.time(), "parked after it was sent, before now"
        options = parse(kafka_url)
        reader = AIOKafkaConsumer(bootstrap_servers=options.bootstrap, enable_auto_commit=False)
        await reader.start()
        try:
            tp = TopicPartition(f"{prefix}.dead.jobs", 0)
            reader.assign([tp])
            reader.seek(tp, 0)
            records = (await reader.getmany(tp, timeout_ms=5000))[tp]
        finally:
            await reader.stop()
        headers = {key: value.decode() for key, value in records[0].headers}
        assert headers["microhive-reason"] == letter.reason
        assert headers["microhive-attempt"] == "2"
        assert headers["microhive-queue"] == "jobs"
        assert headers["microhive-group"] == "microhive"
        assert float(headers["microhive-dead-at"]) == pytest.approx(letter.dead_at)
        assert records[0].key == b"k4", "the key stays with the message"
        assert records[0].value == letter.raw
    finally:
        await broker.close()


async def test_a_plain_kafka_producer_is_understood(kafka_url: str, prefix: str) -> None:
    """What kcat or any client does: the envelope of docs/wire-format.md as the value."""
    got: list[tuple[int, str]] = []

    class Reader(MicroAgent):
        @consumer(JOBS)
        async def job(self, n: int) -> None:
            message = current_message()
            assert message is not None
            got.append((n, message.sender))

    broker = await broker_for(kafka_url)
    producer = AIOKafkaProducer(bootstrap_servers=parse(kafka_url).bootstrap, acks="all")
    await producer.start()
    try:
        async with Reader(broker=broker):
            await producer.send_and_wait(
                f"{prefix}.queue.jobs",
                b'{"v": 1, "kind": "message", "name": "jobs", "sender": "kcat", '
                b'"payload": {"n": 1}}',
                key=b"sensor-7",
            )
            await eventually(lambda: got == [(1, "kcat")], timeout=10)
    finally:
        await producer.stop()
        await broker.close()


async def test_an_unreachable_cluster_is_link_down_after_connect_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """connect() keeps trying for connect_timeout (1 s here), then gives up with LinkDown,
    a TransportError, naming the servers and the option."""
    port = engines.free_port()
    [message] = await recovery.connect_to_a_dead_port_gives_up_with_link_down(KAFKA, port, caplog)
    assert f"cannot connect to 127.0.0.1:{port} within 1 s (connect_timeout;" in message
    url = f"kafka://127.0.0.1:{port}?connect_timeout=1"
    assert message.startswith(f"<KafkaBroker {redact(url)}>: "), "the URL, redacted"

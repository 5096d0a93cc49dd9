"""Plain aiokafka clients beside microhive agents (issue 12): a seed-004 style JSON producer
into an existing topic, a text queue read and written by both sides, dead letters of plain
records, and tail by key over an address."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from microhive import MicroAgent, Queue, QueueBroker, Reject, consumer, current_message
from microhive.envelope import Envelope, new_id
from microhive.testing import eventually
from microhive.transports.kafka.options import parse

RUN = new_id()[:8]
"""The seed's ``terra_topic`` lives outside microhive's naming: one of its own per run."""
TELEMETRY = Queue("plain_telemetry", address=f"terra_topic_{RUN}")
TAILED = Queue("plain_tailed", address=f"terra_topic_{RUN}_tailed")
PICKY = Queue("plain_picky", address=f"terra_topic_{RUN}_picky")
DECLARED = Queue("plain_declared", address=f"terra_topic_{RUN}_declared")
HELLO = Queue("plain_hello", payload="text")
JOBS = Queue("plain_jobs")
QUEUES = [TELEMETRY, TAILED, PICKY, DECLARED, HELLO, JOBS]
"""Given to every broker: each test has a catalog of its own (tests/conftest.py)."""


@pytest.fixture
async def existing(kafka_url: str) -> AsyncIterator[Callable[[Queue], Awaitable[str]]]:
    """Creates a queue's address as the seed's operator did (2 partitions); deleted after."""
    admin = AIOKafkaAdminClient(bootstrap_servers=parse(kafka_url).bootstrap)
    await admin.start()
    made: list[str] = []

    async def create(queue: Queue) -> str:
        assert queue.address is not None
        await admin.create_topics([NewTopic(queue.address, 2, 1)])
        made.append(queue.address)
        return queue.address

    try:
        yield create
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics(made)
        await admin.close()


@pytest.fixture
async def seed_producer(kafka_url: str) -> AsyncIterator[AIOKafkaProducer]:
    """The seed's producer: JSON values, as it is written there."""
    producer = AIOKafkaProducer(
        bootstrap_servers=parse(kafka_url).bootstrap,
        value_serializer=lambda v: json.dumps(v).encode(),
    )
    await producer.start()
    yield producer
    await producer.stop()


class Telemetry(MicroAgent):
    @consumer(TELEMETRY)
    async def reading(self, **fields: Any) -> None:
        self.settings["got"].append(current_message())


async def test_a_seed_producer_writes_json_to_an_existing_topic_an_agent_consumes_it(
    kafka_url: str, existing: Any, seed_producer: AIOKafkaProducer
) -> None:
    terra_topic = await existing(TELEMETRY)
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    agent = Telemetry(broker=broker, settings={"got": []})
    async with agent:
        readings = [{"satellite": "terra", "t": n, "temp": 20.5 + n} for n in range(5)]
        for reading in readings:
            await seed_producer.send_and_wait(
                terra_topic, reading, key=b"terra", headers=[("source", b"ground-1")]
            )
        await eventually(lambda: len(agent.settings["got"]) == 5, 30)
        got: list[Envelope] = agent.settings["got"]
        assert [e.payload for e in got] == readings, "one key, one partition: in order"
        first = got[0]
        assert first.headers == {"source": "ground-1", "x-key": "terra"}
        assert first.id.startswith(f"{terra_topic}:") and first.id.endswith(":0")
        assert first.name == "plain_telemetry"
        assert abs(first.sent_at - got[-1].sent_at) < 60, "the record timestamp, in seconds"
        assert await broker.length("plain_telemetry") == 0
        # no topic of microhive's naming was created for the queue itself
        admin = AIOKafkaAdminClient(bootstrap_servers=parse(kafka_url).bootstrap)
        await admin.start()
        try:
            topics = set(await admin.list_topics())
        finally:
            await admin.close()
        options = parse(kafka_url)
        assert f"{options.prefix}.queue.plain_telemetry" not in topics
        assert f"{options.prefix}.dead.plain_telemetry" in topics


async def test_tail_by_key_over_an_address_reads_the_seed_producers_records(
    kafka_url: str, existing: Any, seed_producer: AIOKafkaProducer
) -> None:
    terra_topic = await existing(TAILED)
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    async with broker:
        for n in range(30):
            key = b"terra" if n % 3 == 0 else b"aqua"
            await seed_producer.send_and_wait(terra_topic, {"n": n}, key=key)
        stream = broker.tail(TAILED, last=4, key="terra")
        got: list[int] = []
        try:
            async with asyncio.timeout(20):
                async for message in stream:
                    assert message.headers["x-key"] == "terra"
                    got.append(message.payload["n"])
                    if len(got) == 4:
                        break
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
        assert got == [18, 21, 24, 27]


class Texts(MicroAgent):
    @consumer(HELLO)
    async def hello(self, text: str) -> None:
        assert isinstance(text, str)
        self.settings["got"].append(current_message())


async def test_a_text_queue_is_plain_text_for_plain_clients_on_both_sides(
    kafka_url: str,
) -> None:
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    options = parse(kafka_url)
    topic = options.topic("plain_hello")
    agent = Texts(broker=broker, settings={"got": []})
    async with agent:
        sent_id = await broker.send(
            "plain_hello", "Hello World", key="k", headers={"lang": "en"}, sender="me"
        )
        raw = AIOKafkaProducer(bootstrap_servers=options.bootstrap)
        await raw.start()
        try:
            await raw.send_and_wait(topic, b"hi from aiokafka", key=b"k")
        finally:
            await raw.stop()
        await eventually(lambda: len(agent.settings["got"]) == 2, 30)
        mine, theirs = agent.settings["got"]
        assert (mine.payload, mine.id, mine.sender) == ("Hello World", sent_id, "me")
        assert mine.headers == {"lang": "en", "x-key": "k"}, "the same envelope comes back"
        assert theirs.payload == "hi from aiokafka"
        assert theirs.headers == {"x-key": "k"}

    # what a plain consumer of the topic reads: the bare text
    reader = AIOKafkaConsumer(
        topic, bootstrap_servers=options.bootstrap, auto_offset_reset="earliest"
    )
    await reader.start()
    try:
        values: list[bytes] = []
        async with asyncio.timeout(20):
            while len(values) < 2:
                batch = await reader.getmany(timeout_ms=500)
                values += [r.value for records in batch.values() for r in records]
    finally:
        await reader.stop()
    assert sorted(values) == [b"Hello World", b"hi from aiokafka"]


class Picky(MicroAgent):
    @consumer(PICKY, retries=0)
    async def reading(self, n: int) -> None:
        if not self.settings["fixed"]:
            raise Reject("not yet")
        self.settings["done"].append(n)


async def test_a_plain_record_dead_letters_and_requeues_as_its_payload(
    kafka_url: str, existing: Any, seed_producer: AIOKafkaProducer
) -> None:
    terra_topic = await existing(PICKY)
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    agent = Picky(broker=broker, settings={"done": [], "fixed": False})
    async with agent:
        await seed_producer.send_and_wait(
            terra_topic, {"n": 4}, key=b"terra", headers=[("trace", b"\xffabc")]
        )
        letters: Any = await eventually(lambda: broker.dead_letters("plain_picky"), 30)
        [letter] = letters
        assert letter.envelope.payload == {"n": 4}
        assert letter.reason == "Reject: not yet"
        assert letter.envelope.headers == {"trace": "\ufffdabc", "x-key": "terra"}
        agent.settings["fixed"] = True
        assert await broker.requeue("plain_picky") == 1
        await eventually(lambda: agent.settings["done"] == [4], 30)
        assert await broker.dead_letters("plain_picky") == []


class Strict(MicroAgent):
    @consumer(JOBS, retries=0)
    async def job(self, n: int, reason: str) -> None:
        raise Reject(reason)


async def test_done_marks_survive_a_new_broker_and_later_letters_are_listed(
    kafka_url: str,
) -> None:
    """A purge that is not the oldest leaves done records; a new broker reads them; letters
    that die after a purge of everything are listed still."""
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    agent = Strict(broker=broker)
    async with agent:
        for n in range(6):
            await broker.send("plain_jobs", {"n": n, "reason": "odd" if n % 2 else "even"}, key="k")
        await eventually(lambda: _count(broker, 6), 30)
        assert await broker.purge("plain_jobs", reason="odd") == 3
    again = QueueBroker.from_url(kafka_url, queues=QUEUES)
    async with again:
        left = [letter.envelope.payload["n"] for letter in await again.dead_letters("plain_jobs")]
        assert left == [0, 2, 4], "one key, one partition: they died in order"
        assert await again.purge("plain_jobs", limit=1) == 1
        assert await again.purge("plain_jobs") == 2
        assert await again.dead_letters("plain_jobs") == []
    later = QueueBroker.from_url(kafka_url, queues=QUEUES)
    agent = Strict(broker=later)
    async with agent:
        await later.send("plain_jobs", {"n": 9, "reason": "late"})
        letters = await eventually(lambda: _count(later, 1), 30)
        assert [letter.envelope.payload["n"] for letter in letters] == [9]


async def _count(broker: QueueBroker, count: int) -> Any:
    letters = await broker.dead_letters("plain_jobs")
    return letters if len(letters) >= count else None


async def test_declare_creates_a_missing_address_so_a_plain_producer_can_start_first(
    kafka_url: str, seed_producer: AIOKafkaProducer
) -> None:
    broker = QueueBroker.from_url(kafka_url, queues=QUEUES)
    topic = DECLARED.address
    assert topic is not None
    admin = AIOKafkaAdminClient(bootstrap_servers=parse(kafka_url).bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
        async with broker:
            assert await broker.declare([DECLARED]) == ["plain_declared"]
            assert await broker.declare([DECLARED]) == ["plain_declared"], "idempotent"
            assert topic in await admin.list_topics()
            await seed_producer.send_and_wait(topic, {"n": 1})
            await seed_producer.send_and_wait(topic, {"n": 2})
            assert await broker.length(DECLARED) == 2, "waiting for the queue's group"
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
        await admin.close()

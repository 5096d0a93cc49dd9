"""Plain nats-py on both sides of a microhive queue (issue 12): JetStream publishes of plain
JSON with headers, a text queue read and written by plain clients, an operator's existing
stream used by its subject (``Queue(address=...)``), and a plain message's dead letter sent
back once the consumer was fixed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import nats
import pytest

from microhive import (
    ConfigurationError,
    MicroAgent,
    Queue,
    QueueBroker,
    Reject,
    consumer,
    current_message,
)
from microhive.testing import eventually

from .. import engines

SENSORS = Queue("nsensors")
GREETINGS = Queue("ngreetings", payload="text")
BLOBS = Queue("nblobs", payload="bytes")


def seen(agent: MicroAgent, payload: Any) -> None:
    message = current_message()
    assert message is not None
    agent.settings["seen"].append(message)
    agent.settings["payloads"].append(payload)


class Reader(MicroAgent):
    @consumer(SENSORS)
    async def reading(self, **reading: Any) -> None:
        if reading.get("lat") == "broken" and not self.settings.get("fixed"):
            raise Reject("lat is not a number")
        seen(self, reading)

    @consumer(GREETINGS)
    async def greeting(self, text: str) -> None:
        seen(self, text)

    @consumer(BLOBS)
    async def blob(self, data: bytes) -> None:
        seen(self, data)


@pytest.fixture
async def plain() -> AsyncIterator[Any]:
    client = await nats.connect(engines.require_nats())
    yield client
    await client.close()


async def until(condition: Callable[[], Any | Awaitable[Any]]) -> Any:
    return await eventually(condition, 20, 0.02)


async def test_plain_json_with_headers_is_adopted(nats_url: str, prefix: str, plain: Any) -> None:
    broker = QueueBroker.from_url(nats_url)
    agent = Reader(broker=broker, settings={"seen": [], "payloads": []})
    async with broker, agent:
        await broker.declare([SENSORS])
        subject = f"{prefix}.queue.nsensors"
        before = time.time()
        await plain.jetstream().publish(
            subject,
            b'{"sat": "terra", "lat": 1.5}',
            headers={"source": "sensor-7", "Nats-Msg-Id": "reading-1"},
        )
        after = time.time()
        [message] = await until(lambda: agent.settings["seen"])
        await until(lambda: _empty(broker, SENSORS))
    assert agent.settings["payloads"] == [{"sat": "terra", "lat": 1.5}]
    assert message.id == "reading-1", "Nats-Msg-Id is the message id"
    assert message.headers["source"] == "sensor-7"
    assert message.headers["x-routing-key"] == subject, "the subject it was published on"
    assert message.attempt == 1 and message.sender == ""
    assert before - 1 <= message.sent_at <= after + 1, "when JetStream stored it"


async def test_text_queue_for_plain_clients_on_both_sides(
    nats_url: str, prefix: str, plain: Any
) -> None:
    subject = f"{prefix}.queue.ngreetings"
    broker = QueueBroker.from_url(nats_url, queues=[GREETINGS])
    async with broker:
        await broker.declare()
        sent_id = await broker.ngreetings.send("Hello World", headers={"lang": "en"}, sender="me")
        js = plain.jetstream()
        reader = await js.pull_subscribe(subject, durable=None, stream=f"{prefix}_queue_ngreetings")
        [stored] = await reader.fetch(1, timeout=5)
        await reader.unsubscribe()
        await js.publish(subject, b"Hi from nats-py")
        agent = Reader(broker=broker, settings={"seen": [], "payloads": []})
        async with agent:
            await until(lambda: len(agent.settings["seen"]) == 2)
            await until(lambda: _empty(broker, GREETINGS))
    assert stored.data == b"Hello World", "a plain consumer reads the text itself"
    assert stored.headers["Microhive"] == "payload"
    assert stored.headers["lang"] == "en"
    ours, theirs = agent.settings["seen"]
    assert agent.settings["payloads"] == ["Hello World", "Hi from nats-py"]
    assert (ours.id, ours.sender, dict(ours.headers)) == (sent_id, "me", {"lang": "en"})
    assert theirs.sender == "" and theirs.id != sent_id


async def test_bytes_queue_adopts_a_plain_body(nats_url: str, prefix: str, plain: Any) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[BLOBS])
    agent = Reader(broker=broker, settings={"seen": [], "payloads": []})
    async with broker, agent:
        await plain.jetstream().publish(f"{prefix}.queue.nblobs", b"\x00\xffraw")
        await until(lambda: agent.settings["seen"])
    assert agent.settings["payloads"] == [b"\x00\xffraw"]


async def test_an_existing_stream_is_used_by_its_subject(
    nats_url: str, prefix: str, plain: Any
) -> None:
    """An operator's stream on ``<prefix>tele.>``: microhive sends to, consumes from, counts
    and replays ``<prefix>tele.raw`` in it, and leaves the stream as it was."""
    js = plain.jetstream()
    stream, subject = f"{prefix}_TELEMETRY", f"{prefix}tele.raw"
    await js.add_stream(name=stream, subjects=[f"{prefix}tele.>"], description="the operator's")
    await js.publish(f"{prefix}tele.other", b'{"sat": "not ours"}')
    await js.publish(subject, b'{"sat": "terra"}')
    queue = Queue("ntelemetry", address=subject)
    got: list[str] = []

    class Telemetry(MicroAgent):
        @consumer(queue)
        async def reading(self, sat: str) -> None:
            got.append(sat)

    broker = QueueBroker.from_url(nats_url, queues=[queue])
    async with broker:
        await broker.ntelemetry.send({"sat": "aqua"})
        assert await broker.ntelemetry.length() == 2, "only the queue's subject counts"
        replay = broker.ntelemetry.tail(last=2)
        replayed = [(await anext(replay)).payload["sat"] for _ in range(2)]
        await replay.aclose()  # type: ignore[attr-defined]
        async with Telemetry(broker=broker):
            await until(lambda: len(got) == 2)
            await until(lambda: _empty(broker, queue))
    assert got == ["terra", "aqua"]
    assert replayed == ["terra", "aqua"]
    info = await js.stream_info(stream)
    assert info.config.subjects == [f"{prefix}tele.>"], "the stream is not changed"
    assert info.config.description == "the operator's"
    assert info.state.messages == 3, "nothing was trimmed or added besides the send"
    names = [c.name for c in await js.consumers_info(stream)]
    assert names == ["microhive_ntelemetry"], "a durable consumer of microhive's own"


async def test_an_address_without_a_stream_gets_one(nats_url: str, prefix: str, plain: Any) -> None:
    """No stream captures the subject: declare() makes one, so a plain publisher can start
    before any consumer."""
    subject = f"{prefix}orders.new"
    queue = Queue("norders", address=subject)
    broker = QueueBroker.from_url(nats_url, queues=[queue])
    async with broker:
        assert await broker.declare() == ["norders"]
        await plain.jetstream().publish(subject, b'{"sat": "early"}')
        assert await broker.norders.length() == 1
    info = await plain.jetstream().stream_info(f"{prefix}_queue_norders")
    assert subject in info.config.subjects


async def test_a_plain_messages_dead_letter_goes_back(
    nats_url: str, prefix: str, plain: Any
) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[SENSORS])
    settings: dict[str, Any] = {"seen": [], "payloads": [], "fixed": False}
    agent = Reader(broker=broker, settings=settings)
    async with broker, agent:
        await broker.declare([SENSORS])
        await plain.jetstream().publish(
            f"{prefix}.queue.nsensors", b'{"lat": "broken"}', headers={"source": "cli"}
        )
        [letter] = await until(lambda: _dead(broker))
        assert letter.envelope is not None, "adopted, so it can be read and sent back"
        assert letter.envelope.payload == {"lat": "broken"}
        assert letter.envelope.headers["source"] == "cli"
        assert "lat is not a number" in letter.reason
        ids = [d.envelope and d.envelope.id for d in await broker.nsensors.dead.list()]
        assert ids == [letter.envelope.id], "listed again: the same id"
        settings["fixed"] = True
        assert await broker.nsensors.dead.requeue() == 1
        [message] = await until(lambda: agent.settings["seen"])
        assert await broker.nsensors.dead.list() == []
    assert agent.settings["payloads"] == [{"lat": "broken"}]
    assert message.id == letter.envelope.id
    assert message.headers["x-requeued"] == letter.reason


async def test_tail_by_key_finds_plain_messages_with_an_x_key_header(
    nats_url: str, prefix: str, plain: Any
) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[SENSORS])
    async with broker:
        await broker.declare()
        js = plain.jetstream()
        for n in range(6):
            key = "terra" if n % 2 else "aqua"
            await js.publish(f"{prefix}.queue.nsensors", b'{"n": %d}' % n, headers={"x-key": key})
        await broker.nsensors.send({"n": 6}, key="terra")
        replay = broker.nsensors.tail(last=3, key="terra")
        got = [(await anext(replay)).payload["n"] for _ in range(3)]
        await replay.aclose()  # type: ignore[attr-defined]
    assert got == [3, 5, 6]


async def _empty(broker: QueueBroker, queue: Queue) -> bool:
    return await broker.length(queue) == 0


async def _dead(broker: QueueBroker) -> Any:
    return await broker.nsensors.dead.list()


class Picky(MicroAgent):
    @consumer(GREETINGS, retries=1, backoff=0.01)
    async def greeting(self, text: str) -> None:
        self.settings["tries"].append(text)
        if not self.settings["fixed"]:
            raise ValueError("not today")
        seen(self, text)


async def test_a_text_message_keeps_its_envelope_through_retry_and_dead_letter(
    nats_url: str,
) -> None:
    broker = QueueBroker.from_url(nats_url, queues=[GREETINGS])
    settings: dict[str, Any] = {"seen": [], "payloads": [], "tries": [], "fixed": False}
    async with broker, Picky(broker=broker, settings=settings):
        sent = await broker.ngreetings.send("Hello", headers={"lang": "en"}, sender="me")
        [letter] = await until(lambda: _dead_greetings(broker))
        assert settings["tries"] == ["Hello", "Hello"], "a retry, then the dead letters"
        assert letter.raw == b"Hello", "the body as it was stored"
        assert letter.envelope is not None
        assert (letter.envelope.id, letter.envelope.sender) == (sent, "me")
        assert letter.envelope.payload == "Hello"
        assert letter.envelope.headers["lang"] == "en"
        settings["fixed"] = True
        assert await broker.ngreetings.dead.requeue() == 1
        [message] = await until(lambda: settings["seen"])
    assert (message.id, message.sender, message.attempt) == (sent, "me", 1)
    assert message.headers["lang"] == "en" and "x-requeued" in message.headers


async def _dead_greetings(broker: QueueBroker) -> Any:
    return await broker.ngreetings.dead.list()


async def test_an_address_must_be_a_subject_to_publish_to(nats_url: str) -> None:
    for n, address in enumerate(("telemetry.*", "telemetry.>", "telemetry..raw", "tele.raw.")):
        queue = Queue(f"nbad{n}", address=address)
        async with QueueBroker.from_url(nats_url, queues=[queue]) as broker:
            with pytest.raises(ConfigurationError, match="not a NATS subject"):
                await broker.send(queue, {"n": 1})

"""Plain Redis clients on both sides of a microhive queue (issue 12): redis-cli and redis-py
producers that know nothing of envelopes, an existing stream (``Queue(address=...)``), a
text queue read by a plain consumer, and dead letters sent back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from microhive import MicroAgent, Queue, QueueBroker, consumer, current_message
from microhive.envelope import Envelope, new_id

from .. import engines
from .test_foreign import redis_cli, until

SENSORS = Queue("sensors")
GREETINGS = Queue("greetings", payload="text")
TELEMETRY = Queue("telemetry")
PARCELS = Queue("parcels")
BLOBS = Queue("blobs", payload="bytes")


def seen(agent: MicroAgent, payload: Any) -> None:
    message = current_message()
    assert message is not None
    agent.settings["seen"].append((payload, message.id, dict(message.headers), message.sent_at))


class Reader(MicroAgent):
    @consumer(SENSORS)
    async def reading(self, **reading: Any) -> None:
        seen(self, reading)

    @consumer(GREETINGS)
    async def greeting(self, text: str) -> None:
        seen(self, text)


class Telemetry(MicroAgent):
    @consumer(TELEMETRY)
    async def reading(self, sat: str, lat: float) -> None:
        seen(self, {"sat": sat, "lat": lat})


async def test_redis_cli_plain_json_body_is_adopted(redis_url: str, prefix: str) -> None:
    broker = QueueBroker.from_url(redis_url)
    agent = Telemetry(broker=broker, settings={"seen": []})
    async with broker, agent:
        stream = f"{prefix}queue:telemetry"
        entry = redis_cli(redis_url, "XADD", stream, "*", "data", '{"sat": "terra", "lat": 1.5}')
        [(payload, message_id, headers, sent_at)] = await until(lambda: agent.settings["seen"])
        await until(lambda: _empty(broker, TELEMETRY))
    assert payload == {"sat": "terra", "lat": 1.5}
    assert message_id == entry, "the entry id is the message id"
    assert headers == {}
    assert sent_at == int(entry.split("-")[0]) / 1000, "the entry's time is when it was sent"


async def test_redis_cli_plain_fields_and_data_beside_fields(redis_url: str, prefix: str) -> None:
    broker = QueueBroker.from_url(redis_url)
    agent = Reader(broker=broker, settings={"seen": []})
    async with broker, agent:
        stream = f"{prefix}queue:sensors"
        redis_cli(redis_url, "XADD", stream, "*", "sat", "terra", "lat", "1.5")
        redis_cli(
            redis_url, "XADD", stream, "*", "data", '{"lat": 2}', "source", "cli", "sat", "aqua"
        )
        got = await until(
            lambda: agent.settings["seen"] if len(agent.settings["seen"]) == 2 else None
        )
        await until(lambda: _empty(broker, SENSORS))
    (fields, _, no_headers, _), (body, _, headers, _) = got
    assert fields == {"sat": "terra", "lat": "1.5"}, "fields without data: the payload, as strings"
    assert no_headers == {}
    assert body == {"lat": 2}
    assert headers == {"source": "cli", "sat": "aqua"}, "fields beside data: headers"


async def test_redis_py_producer_into_an_existing_stream(redis_url: str) -> None:
    """A stream some other service already writes to, used by its own name."""
    import redis.asyncio as aioredis

    address = f"sensor_stream.{new_id()[:8]}"
    sensors = Queue("sensor_feed", address=address)
    client = aioredis.Redis.from_url(engines.REDIS_URL)

    class Feed(MicroAgent):
        @consumer(sensors)
        async def reading(self, sat: str, lat: str) -> None:
            seen(self, {"sat": sat, "lat": lat})

    try:
        await client.xadd(address, {"sat": "terra", "lat": "1.5"})  # before microhive is there
        broker = QueueBroker.from_url(redis_url, queues=[sensors])
        agent = Feed(broker=broker, settings={"seen": []})
        async with broker:
            history = broker.sensor_feed.tail(last=5)
            first = await anext(history)
            await history.aclose()  # type: ignore[attr-defined]
            assert first.payload == {"sat": "terra", "lat": "1.5"}
            assert await broker.sensor_feed.length() == 1
            async with agent:
                await client.xadd(address, {"data": json.dumps({"sat": "aqua", "lat": "-3"})})
                await broker.sensor_feed.send({"sat": "mh", "lat": "0"})
                await until(lambda: len(agent.settings["seen"]) == 3)
                await until(lambda: _empty(broker, sensors))
            assert [s[0]["sat"] for s in agent.settings["seen"]] == ["terra", "aqua", "mh"]
            assert await client.xlen(address) == 3, "everything went to the stream, verbatim"
            groups = await client.xinfo_groups(address)
            assert [g["name"] for g in groups] == [b"microhive"]
    finally:
        await client.delete(address)
        await client.aclose()


async def test_an_existing_stream_is_never_trimmed(redis_url: str, prefix: str) -> None:
    """Its retention is its owner's: microhive trims its own streams only."""
    import redis.asyncio as aioredis

    address = f"sensor_stream.{new_id()[:8]}"
    kept, trimmed = Queue("kept", address=address), Queue("trimmed")

    class Both(MicroAgent):
        @consumer(kept)
        async def one(self, n: int) -> None:
            self.settings["seen"].append(n)

        @consumer(trimmed)
        async def other(self, n: int) -> None:
            self.settings["seen"].append(n)

    client = aioredis.Redis.from_url(engines.REDIS_URL)
    broker = QueueBroker.from_url(engines.with_query(redis_url, trim_interval=0.05))
    try:
        async with broker, Both(broker=broker, settings={"seen": []}) as agent:
            await broker.queue(kept).send({"n": 1})
            for n in (2, 3):  # two trim rounds of the other queue, each after its ack
                await broker.queue(trimmed).send({"n": n})
                await until(lambda n=n: n in agent.settings["seen"])
                await until(lambda: _xlen_is(client, f"{prefix}queue:trimmed", 0))
            assert 1 in agent.settings["seen"]
            assert await client.xlen(address) == 1, "acknowledged, and still in the stream"
    finally:
        await client.delete(address)
        await client.aclose()


async def _xlen_is(client: Any, stream: str, length: int) -> bool:
    return bool(await client.xlen(stream) == length)


async def test_text_queue_is_plain_text_for_plain_consumers(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(engines.REDIS_URL)
    stream = f"{prefix}queue:greetings"
    try:
        async with QueueBroker.from_url(redis_url, queues=[GREETINGS]) as producer:
            message_id = await producer.greetings.send(
                "Hello World", headers={"lang": "en"}, sender="svc"
            )
        # a plain consumer in a group of its own reads exactly the text
        await client.xgroup_create(stream, "plain", id="0")
        [[_, [(entry, fields)]]] = await client.xreadgroup("plain", "w1", {stream: ">"})
        assert fields[b"data"] == b"Hello World"
        await client.xack(stream, "plain", entry)
        await client.xgroup_destroy(stream, "plain")  # length() counts the group furthest behind

        broker = QueueBroker.from_url(redis_url)
        agent = Reader(broker=broker, settings={"seen": []})
        async with broker, agent:
            redis_cli(redis_url, "XADD", stream, "*", "data", "Hello from redis-cli")
            got = await until(
                lambda: agent.settings["seen"] if len(agent.settings["seen"]) == 2 else None
            )
            await until(lambda: _empty(broker, GREETINGS))
            (text, mine_id, headers, _), (plain, _, _, _) = got
            assert (text, mine_id, headers) == ("Hello World", message_id, {"lang": "en"})
            assert plain == "Hello from redis-cli"
            await broker.queue(GREETINGS).send("later", delay=0.05)  # an envelope in data
            await until(lambda: len(agent.settings["seen"]) == 3)
            assert agent.settings["seen"][2][0] == "later"
    finally:
        await client.aclose()


class Picky(MicroAgent):
    @consumer(PARCELS, retries=0)
    async def parcel(self, weight: int) -> None:
        if not self.settings["fixed"]:
            raise ValueError("too heavy")
        seen(self, weight)


async def test_dead_plain_messages_keep_their_form_and_go_back(redis_url: str, prefix: str) -> None:
    broker = QueueBroker.from_url(redis_url)
    agent = Picky(broker=broker, settings={"seen": [], "fixed": False})
    async with broker, agent:
        stream = f"{prefix}queue:parcels"
        entry = redis_cli(redis_url, "XADD", stream, "*", "data", '{"weight": 7}', "from", "cli")
        redis_cli(redis_url, "XADD", stream, "*", "weight", "9")
        letters = await until(lambda: _letters(broker, PARCELS, 2))
        # both entries are read in one batch and dead-lettered concurrently: in either order
        [first] = [letter for letter in letters if letter.raw == b'{"weight": 7}']
        assert first.envelope.payload == {"weight": 7}
        assert first.envelope.id == entry and first.envelope.headers == {"from": "cli"}
        assert [letter.envelope.payload for letter in letters if letter is not first] == [
            {"weight": "9"}
        ]
        agent.settings["fixed"] = True
        assert await broker.requeue(PARCELS, reason="too heavy") == 2
        await until(lambda: len(agent.settings["seen"]) == 2)
        assert {repr(s[0]) for s in agent.settings["seen"]} == {"7", "'9'"}, "fields stay strings"
        [(_, _, headers, _)] = [s for s in agent.settings["seen"] if s[0] == 7]
        assert headers == {"from": "cli", "x-requeued": first.reason}
        assert await broker.dead_letters(PARCELS) == []


async def test_tail_by_key_scans_back_past_other_keys(redis_url: str) -> None:
    """The key's last messages are far back: the scan pages through the others."""
    async with QueueBroker.from_url(redis_url, queues=[TELEMETRY]) as broker:
        for n in range(3):
            await broker.telemetry.send({"sat": "terra", "lat": n}, key="terra")
        for n in range(1200):
            await broker.telemetry.send({"sat": "aqua", "lat": n}, key="aqua")
        got = [m.payload["lat"] async for m in _take(broker.telemetry.tail(last=2, key="terra"), 2)]
        assert got == [1, 2]


class Blobs(MicroAgent):
    @consumer(BLOBS, retries=3)
    async def blob(self, data: bytes) -> None:
        seen(self, data)
        if data.startswith(b"bad"):
            raise ValueError("bad blob")


async def test_bytes_queue_takes_plain_bytes(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(engines.REDIS_URL)
    broker = QueueBroker.from_url(redis_url)
    agent = Blobs(broker=broker, settings={"seen": []})
    try:
        async with broker, agent:
            await client.xadd(f"{prefix}queue:blobs", {"data": b"\x00\xff ok"})
            await client.xadd(f"{prefix}queue:blobs", {"data": b"bad \xfe"})
            [letter] = await until(lambda: _letters(broker, BLOBS, 1))
            assert [s[0] for s in agent.settings["seen"]] == [b"\x00\xff ok", b"bad \xfe"]
            assert letter.raw == b"bad \xfe" and letter.envelope.payload == b"bad \xfe"
            assert "not retried" in letter.reason, "JSON cannot carry a bytes retry: dead at once"
    finally:
        await client.aclose()


async def _take(source: AsyncIterator[Envelope], count: int) -> AsyncIterator[Envelope]:
    taken = 0
    try:
        async for item in source:
            yield item
            taken += 1
            if taken == count:
                return
    finally:
        await source.aclose()  # type: ignore[attr-defined]


async def _empty(broker: QueueBroker, queue: Queue) -> bool:
    return await broker.length(queue) == 0


async def _letters(broker: QueueBroker, queue: Queue, count: int) -> Any:
    letters = await broker.dead_letters(queue)
    return letters if len(letters) >= count else None

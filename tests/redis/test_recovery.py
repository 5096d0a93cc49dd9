"""Recovery inside one process: dropped connections, a stalled server, a server that lost
everything. Consumer loops and the subscriber never end; they reconnect and go on."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from microhive import MicroAgent, QueueBroker, SignalBus, consumer, receiver
from microhive.testing import eventually as eventually_

from .. import engines
from ..fault_agents import JOBS, PING


class Worker(MicroAgent):
    @consumer(JOBS, concurrency=4)
    async def job(self, n: int) -> None:
        self.settings["jobs"].append(n)


class Agent(Worker):
    @receiver(PING)
    async def ping(self, n: int) -> int:
        self.settings["pings"].append(n)
        return n


async def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait for an outcome; the timeout only ends a hung test, it measures nothing."""
    return await eventually_(condition, timeout, 0.02)


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private Redis without persistence: a restart loses every key."""
    instance = engines.RedisServer(tmp_path / "redis")
    instance.start()
    yield instance
    instance.stop()


async def admin(server: engines.RedisServer, *command: Any) -> Any:
    client = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        return await client.execute_command(*command)
    finally:
        await client.aclose()


async def test_every_connection_killed_then_everything_goes_on(
    server: engines.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "microhive")
    url = engines.with_query(server.url, claim_idle=1)
    bus, broker = SignalBus.from_url(url), QueueBroker.from_url(url)
    agent = Agent(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        killed = await admin(server, "CLIENT", "KILL", "TYPE", "normal")
        killed += await admin(server, "CLIENT", "KILL", "TYPE", "pubsub")
        assert killed >= 4  # bus commands, subscriber, broker, consumer
        await broker.send(JOBS, {"n": 2})  # waits for the reconnect if it has to
        await until(lambda: agent.settings["jobs"] == [1, 2])
        await until(lambda: "subscribed again" in caplog.text)
        assert await bus.signal(PING).call("test", n=3, timeout=30) == 3
    assert "signals published between" in caplog.text, "the loss window is logged"


async def test_stalled_server_breaks_connections_and_they_come_back(
    server: engines.RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "microhive")
    url = engines.with_query(server.url, command_timeout=0.3, block=0.1, claim_idle=1)
    broker = QueueBroker.from_url(url)
    agent = Worker(broker=broker, settings={"jobs": []})
    async with broker, agent:
        await admin(server, "CLIENT", "PAUSE", "1500", "ALL")
        sending = asyncio.ensure_future(broker.send(JOBS, {"n": 1}))
        await until(lambda: "no reply for" in caplog.text)  # a socket timeout...
        await sending  # waited for the reconnect (retry_timeout), did not fail
        await until(lambda: agent.settings["jobs"] == [1])  # ...never ends the consumer


async def test_server_that_lost_everything_gets_streams_and_groups_again(
    server: engines.RedisServer,
) -> None:
    url = engines.with_query(server.url, claim_idle=1)
    broker = QueueBroker.from_url(url)
    agent = Worker(broker=broker, settings={"jobs": []})
    async with broker, agent:
        await broker.send(JOBS, {"n": 1})
        await until(lambda: agent.settings["jobs"] == [1])
        server.kill()
        server.start()  # no persistence: no stream, no consumer group
        await broker.send(JOBS, {"n": 2})
        await until(lambda: agent.settings["jobs"] == [1, 2])
        assert await broker.length(JOBS) in (0, 1)
        await until(lambda: _length_is(broker, 0))


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


async def test_a_long_handler_keeps_its_message(redis_url: str) -> None:
    """Entries held longer than claim_idle are touched, so no other instance takes them."""
    url = engines.with_query(redis_url, claim_idle=0.4)
    calls: list[int] = []

    class Slow(MicroAgent):
        @consumer(JOBS)
        async def job(self, n: int) -> None:
            calls.append(n)
            await asyncio.sleep(1.5)

    first, second = QueueBroker.from_url(url), QueueBroker.from_url(url)
    async with first, second, Slow(broker=first), Slow(broker=second):
        await first.send(JOBS, {"n": 1})
        await until(lambda: calls == [1])
        await until(lambda: _length_is(first, 0))
    assert calls == [1], "taken over while its handler was still running"


async def test_a_message_that_keeps_crashing_its_consumer_is_dead_lettered(redis_url: str) -> None:
    """Reclaimed more than max_deliver times without being settled: dead-lettered, so a
    poison message cannot take every consumer down in turn, forever."""
    url = engines.with_query(redis_url, claim_idle=0.2, max_deliver=2)
    async with QueueBroker.from_url(url, queues=[JOBS]) as producer:
        await producer.send(JOBS, {"n": 1})
        for _ in range(2):  # delivered, then reclaimed once: each time the process "dies"
            crashing = QueueBroker.from_url(url, queues=[JOBS])
            await crashing.connect()
            consumer = await crashing.consume(JOBS, name="crashing")
            async with asyncio.timeout(30):  # ends a hung test only
                delivery = await consumer.get()
            assert delivery.envelope is not None and delivery.envelope.payload == {"n": 1}
            await crashing.close()  # nothing settled, as in a crash
        survivor = QueueBroker.from_url(url, queues=[JOBS])
        async with survivor:
            consumer = await survivor.consume(JOBS, name="survivor")
            letters = await until(lambda: _dead_letters(producer))
            await producer.send(JOBS, {"n": 2})
            async with asyncio.timeout(30):  # ends a hung test only
                after = await consumer.get()
            assert after.envelope is not None and after.envelope.payload == {"n": 2}, (
                "the dead-lettered entry was handed out as well"
            )
            await after.ack()
            await consumer.close()
        [letter] = letters
        assert letter.reason.startswith("delivered 3 times without being settled (max_deliver=2)")
        assert letter.envelope is not None and letter.envelope.payload == {"n": 1}
        assert await producer.length(JOBS) == 0


async def _dead_letters(broker: QueueBroker) -> Any:
    return await broker.dead_letters(JOBS) or None

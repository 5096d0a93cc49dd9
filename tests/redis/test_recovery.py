"""Recovery inside one process: the shared scenarios (tests/scenarios/recovery.py) on Redis,
and what only Redis has: connections killed by CLIENT KILL, a server stalled by CLIENT PAUSE,
a poison message reclaimed until it is dead-lettered."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from microhive import QueueBroker, SignalBus

from .. import engines
from ..fault_agents import JOBS, PING
from ..scenarios import REDIS, Server, recovery
from ..scenarios.recovery import Agent, Worker, until


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


async def test_server_restart_then_everything_goes_on(
    private_redis: Server, caplog: pytest.LogCaptureFixture
) -> None:
    await recovery.server_restart_then_everything_goes_on(REDIS, private_redis, caplog)


async def test_server_that_lost_everything_gets_streams_and_groups_again(
    private_redis: Server,
) -> None:
    await recovery.server_that_lost_everything_gets_its_queues_again(REDIS, private_redis)


async def test_a_long_handler_keeps_its_message(redis_url: str) -> None:
    """Entries held longer than claim_idle are touched, so no other instance takes them."""
    await recovery.a_long_handler_keeps_its_message(engines.with_query(redis_url, claim_idle=0.4))


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.length(JOBS) == expected


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


REDIS_PACKAGE = str(Path(__file__).resolve().parents[2] / "microhive" / "transports" / "redis")


async def test_a_closed_consumer_holding_a_delivery_stops_with_its_broker(
    redis_url: str,
) -> None:
    """A consumer closed while a delivery it handed out is unsettled keeps touching that
    entry (so nobody reclaims it under its handler) — until its broker closes: then nothing
    of the transport is left running (``Task was destroyed but it is pending!``)."""
    broker = QueueBroker.from_url(redis_url, queues=[JOBS])
    await broker.connect()
    try:
        await broker.queue(JOBS).send({"n": 1})
        consumer = await broker.consume(JOBS)
        delivery = await consumer.get()
        assert delivery.envelope is not None
        await consumer.close()
        assert recovery.pending_tasks_of(REDIS_PACKAGE), (
            "the keeper goes on for the unsettled delivery"
        )
    finally:
        await broker.close()
    assert recovery.pending_tasks_of(REDIS_PACKAGE) == []

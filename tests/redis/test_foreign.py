"""Services without microhive: redis-cli publishes to a queue and a signal, as the docs say
(docs/transports/redis.md), and reads what microhive wrote."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from microhive import MicroAgent, QueueBroker, SignalBus, consumer, current_message, receiver
from microhive.testing import eventually as eventually_

from .. import engines
from ..fault_agents import JOBS, PING


def redis_cli(url: str, *args: str) -> str:
    program = engines.require_program("redis-cli")
    parts = urlsplit(url)
    target = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    target += ["-n", (parts.path or "/0").strip("/") or "0"]
    done = subprocess.run(
        [program, *target, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


class Listener(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        message = current_message()
        assert message is not None
        self.settings["jobs"].append((n, message.sender, message.attempt))

    @receiver(PING)
    async def ping(self, n: int) -> None:
        self.settings["pings"].append(n)


async def until(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Wait for an outcome; the timeout only ends a hung test, it measures nothing."""
    return await eventually_(condition, timeout, 0.01)


class Worker(MicroAgent):
    @consumer(JOBS)
    async def job(self, n: int) -> None:
        pass


async def test_redis_cli_publishes_to_a_queue_and_a_signal(redis_url: str, prefix: str) -> None:
    bus = SignalBus.from_url(redis_url)
    broker = QueueBroker.from_url(redis_url)
    agent = Listener(bus, broker, settings={"jobs": [], "pings": []})
    async with bus, broker, agent:
        message = json.dumps({"v": 1, "kind": "message", "name": "jobs", "sender": "cli",
                              "payload": {"n": 5}})  # fmt: skip
        entry = redis_cli(redis_url, "XADD", f"{prefix}queue:jobs", "*", "data", message)
        assert entry.count("-") == 1
        await until(lambda: agent.settings["jobs"] == [(5, "cli", 1)])

        due = int(time.time() * 1000) + 300
        later = json.dumps({"v": 1, "kind": "message", "name": "jobs", "payload": {"n": 6}})
        redis_cli(redis_url, "ZADD", f"{prefix}queue:jobs:delayed", str(due), later)
        assert await broker.length(JOBS) == 1
        await until(lambda: len(agent.settings["jobs"]) == 2)
        assert time.time() * 1000 >= due - 5
        assert agent.settings["jobs"][1] == (6, "", 1)

        signal = json.dumps({"kind": "signal", "name": "ping", "payload": {"n": 1}})
        receivers = redis_cli(redis_url, "PUBLISH", f"{prefix}signal:ping", signal)
        assert receivers == "1"
        await until(lambda: agent.settings["pings"] == [1])
        await until(lambda: _acked(broker))


async def _acked(broker: QueueBroker) -> bool:
    return await broker.length(JOBS) == 0


async def test_what_microhive_writes_is_plain_json_in_the_stream(
    redis_url: str, prefix: str
) -> None:
    async with QueueBroker.from_url(redis_url, queues=[JOBS]) as broker:
        message_id = await broker.jobs.send({"n": 1}, headers={"trace": "t"}, sender="svc")
    raw = redis_cli(redis_url, "XRANGE", f"{prefix}queue:jobs", "-", "+")
    lines = raw.splitlines()
    assert lines[1] == "data"
    envelope = json.loads(lines[2])
    assert envelope["id"] == message_id
    assert envelope["kind"] == "message" and envelope["name"] == "jobs"
    assert envelope["payload"] == {"n": 1} and envelope["headers"] == {"trace": "t"}


@pytest.mark.parametrize(
    "fields, reason",
    [
        (["data", "not json"], "undecodable message: not valid JSON"),
        (["body", "{}"], "invalid payload: TypeError: payload does not fit job"),  # adopted
    ],
)
async def test_bad_foreign_entries_are_dead_lettered(
    redis_url: str, prefix: str, fields: list[str], reason: str
) -> None:
    broker = QueueBroker.from_url(redis_url)
    async with broker, Worker(broker=broker):
        redis_cli(redis_url, "XADD", f"{prefix}queue:jobs", "*", *fields)
        letters = await until(lambda: _letters(broker))
    [letter] = letters
    assert letter.reason.startswith(reason)
    assert (letter.envelope is None) == reason.startswith("undecodable")


async def _letters(broker: QueueBroker) -> Any:
    return await broker.dead_letters(JOBS)


class Answering(MicroAgent):
    @receiver(PING)
    async def ping(self, n: int) -> int:
        return n * 2


async def test_calls_between_microhive_and_a_plain_redis_client(
    redis_url: str, prefix: str
) -> None:
    import redis.asyncio as aioredis

    from microhive import Signal

    client = aioredis.Redis.from_url(engines.REDIS_URL)
    listener = client.pubsub()
    bus = SignalBus.from_url(redis_url, signals=[Signal("ask", ["n"])])
    try:
        async with bus, Answering(bus):
            # the plain client calls an agent: its own reply channel, then PUBLISH the call
            await listener.subscribe("svc:replies")
            call = {"kind": "call", "name": "ping", "id": "c1", "correlation_id": "c1",
                    "reply_to": "svc:replies", "payload": {"n": 21}}  # fmt: skip
            assert await client.publish(f"{prefix}signal:ping", json.dumps(call)) == 1
            reply = await _next_message(listener)
            assert reply["kind"] == "reply" and reply["correlation_id"] == "c1"
            assert reply["payload"] == {"ok": True, "value": 42}

            # an agent calls the plain client, which answers on the call's reply_to
            await listener.subscribe(f"{prefix}signal:ask")
            await listener.unsubscribe("svc:replies")

            async def answer() -> None:
                request = await _next_message(listener)
                value = request["payload"]["n"] + 1
                response = {"kind": "reply", "name": "ask", "sender": "svc",
                            "correlation_id": request["correlation_id"],
                            "payload": {"ok": True, "value": value}}  # fmt: skip
                await client.publish(request["reply_to"], json.dumps(response))

            answering = asyncio.ensure_future(answer())
            assert await bus.call("ask", "test", n=1, timeout=30) == 2
            await answering
    finally:
        await listener.aclose()
        await client.aclose()


async def _next_message(listener: Any) -> Any:
    async with asyncio.timeout(30):  # ends a hung test only
        while True:
            message = await listener.get_message(timeout=1)
            if message is not None and message["type"] == "message":
                return json.loads(message["data"])

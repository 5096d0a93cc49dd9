"""Dead letters as a workflow on RabbitMQ, declarations up front, and queues an earlier
version declared with dead-letter arguments (issue 12)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import aio_pika
import pika
import pytest

from microhive import CapabilityError, Exchange, MicroAgent, Namespace, Queue, Reject, consumer
from microhive.envelope import Envelope, Kind

from .conftest import QUEUES, Opened, eventually, plain_url, prefix_of

ROOT = Path(__file__).resolve().parents[2]

REQUEUER = """
import asyncio, sys
from microhive import QueueBroker

async def main() -> None:
    broker = QueueBroker.from_url(sys.argv[1])
    await broker.connect()
    print("moved", await broker.queue("jobs").dead.requeue(to="events_feed"), flush=True)
    await broker.close()

asyncio.run(main())
"""


async def _bury(broker: Any, count: int) -> None:
    """``count`` dead letters in ``jobs``, as a consumer leaves them (``{"n": i}``)."""
    for start in range(0, count, 500):
        batch = []
        for n in range(start, min(count, start + 500)):
            envelope = Envelope(Kind.MESSAGE, "jobs", {"n": n})
            batch.append(broker.bury("jobs", broker.codec.encode(envelope), envelope, "bad"))
        await asyncio.gather(*batch)


async def _drain(url: str, queue: str) -> list[Any]:
    """Every message of ``queue`` (taken off it), as plain JSON payloads."""
    found = []
    connection = await aio_pika.connect(plain_url(url))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        while (message := await declared.get(no_ack=True, fail=False)) is not None:
            found.append(json.loads(message.body)["payload"]["n"])
    return found


async def test_a_requeue_killed_midway_loses_nothing(opened: Opened) -> None:
    total = 3000
    broker = await opened.broker()
    await broker.declare()
    await _bury(broker, total)
    assert len(await broker.jobs.dead.list(limit=total)) == total
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", REQUEUER, opened.url, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        await eventually(
            lambda: _moved_at_least(broker, 300) if process.returncode is None else True, 60
        )
        process.send_signal(signal.SIGKILL)  # our own child, by its handle
    finally:
        await process.wait()
    assert process.returncode == -signal.SIGKILL, "the requeue finished before the kill"
    moved = await broker.events_feed.length()
    left = len(await broker.jobs.dead.list(limit=total))
    assert 0 < moved < total and left > 0, (moved, left)
    assert moved + left in (total, total + 1), "at most the one in flight is in both places"
    assert await broker.jobs.dead.requeue(to="events_feed") == left
    assert await broker.jobs.dead.list() == []
    found = Counter(await _drain(opened.url, prefix_of(opened.url) + "events_feed"))
    assert set(found) == set(range(total)), "nothing lost"
    duplicates = sum(found.values()) - total
    print(f"requeue of {total} killed after {moved}: {duplicates} duplicate(s)")
    assert duplicates <= 1, duplicates


async def _moved_at_least(broker: Any, count: int) -> bool:
    return bool(await broker.events_feed.length() >= count)


async def test_purge_and_requeue_take_only_the_chosen(opened: Opened) -> None:
    broker = await opened.broker()
    for n in range(4):
        envelope = Envelope(Kind.MESSAGE, "jobs", {"n": n})
        reason = "too big" if n % 2 else "too small"
        await broker.bury("jobs", broker.codec.encode(envelope), envelope, reason)
    assert await broker.jobs.dead.purge(reason="too big", limit=1) == 1
    assert await broker.jobs.dead.requeue(to="events_feed", reason="too small") == 2
    [letter] = await broker.jobs.dead.list()
    assert letter.envelope is not None and letter.envelope.payload == {"n": 3}
    assert sorted(await _drain(opened.url, prefix_of(opened.url) + "events_feed")) == [0, 2]


async def test_tail_by_key_is_refused(opened: Opened) -> None:
    broker = await opened.broker()
    with pytest.raises(CapabilityError, match="cannot"):
        broker.jobs.tail(last=3, key="terra")


LOGS = Exchange("audit", "fanout")
AUDIT = Queue("audit_sink", bindings=[LOGS])


async def test_declare_lets_plain_publishers_start_before_any_consumer(opened: Opened) -> None:
    broker = await opened.broker(queues=Namespace([*QUEUES.values(), AUDIT], kind="queue"))
    assert await broker.declare() == ["jobs", "events_feed", "audit_sink"]
    prefix = prefix_of(opened.url)
    parameters = pika.URLParameters(plain_url(opened.url))

    def publish() -> None:
        with pika.BlockingConnection(parameters) as connection:
            channel = connection.channel()
            channel.confirm_delivery()  # so an unroutable mandatory publish would raise
            channel.basic_publish("", prefix + "jobs", b'{"n": 1}', mandatory=True)
            channel.basic_publish(prefix + "audit", "", b'{"n": 2}', mandatory=True)

    await asyncio.to_thread(publish)
    assert await broker.jobs.length() == 1
    assert await broker.audit_sink.length() == 1
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(prefix + "jobs:dead", passive=True)  # the dead letters too


class Fussy(MicroAgent):
    @consumer(QUEUES.jobs, retries=1, backoff=0)
    async def job(self, n: int) -> None:
        if n < 0:
            raise Reject("negative")
        if n == 0:
            raise ValueError("zero")
        self.settings["done"].append(n)


async def test_a_queue_an_earlier_version_declared_with_a_dlx_keeps_working(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    """Detected by RabbitMQ's PRECONDITION_FAILED, used as it is (not redeclared), no
    warning; its dead-letter exchange still catches what plain consumers reject."""
    prefix = prefix_of(opened.url)
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            prefix + "jobs",
            durable=True,
            arguments={
                "x-dead-letter-exchange": prefix + "microhive:dead-letter",
                "x-dead-letter-routing-key": prefix + "jobs",
            },
        )
    caplog.set_level(logging.DEBUG, logger="microhive.amqp")
    broker = await opened.broker()
    await broker.jobs.send({"n": 5})
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(prefix + "jobs", passive=True)
        incoming = await declared.get(timeout=5)
        assert incoming is not None
        await incoming.reject(requeue=False)  # RabbitMQ dead-letters it: the DLX is there
    [letter] = await eventually(broker.jobs.dead.list)
    assert letter.reason == "rejected (by RabbitMQ)"
    agent = Fussy(broker=broker, settings={"done": []})
    async with agent:
        for n in (1, 0, -1):
            await broker.jobs.send({"n": n})
        letters = await eventually(lambda: _dead(broker, 3))
        assert agent.settings["done"] == [1]
    reasons = sorted(letter.reason.split(":")[0] for letter in letters)
    assert reasons == ["Reject", "ValueError", "rejected (by RabbitMQ)"]
    ours = [r for r in caplog.records if r.name == "microhive.amqp"]
    assert [r for r in ours if r.levelno >= logging.WARNING] == []
    assert any("x-dead-letter-exchange" in r.getMessage() for r in ours), "said at debug level"


async def _dead(broker: Any, count: int) -> Any:
    letters = await broker.jobs.dead.list()
    return letters if len(letters) >= count else None

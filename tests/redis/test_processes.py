"""Fault tests with real processes: SIGKILLed consumers, a Redis restart, the supervisor."""

from __future__ import annotations

import asyncio
import os
import re
import signal

import pytest

from microhive import QueueBroker, SignalBus

from .. import engines
from ..cli.helpers import Process
from ..fault_agents import JOBS, PING
from ..processes import (
    RECORDER,
    Records,
    a_consumer_killed_mid_run,
    a_producer_that_stops_and_comes_back,
    ready,
    run_producer,
    run_recorder,
    stop,
    until,
)

pytestmark = pytest.mark.slow


async def test_sigkill_of_a_consumer_process_mid_run_loses_nothing(
    redis_url: str, records: Records
) -> None:
    survivor = await a_consumer_killed_mid_run(
        redis_url,
        records,
        kill_when=lambda records, _: len(records.processed()) >= 3_000,
        # only what the killed process held (prefetch 8) and the acks it had not sent yet
        max_duplicates=16,
    )
    assert "reclaimed" in survivor.output


async def test_a_producer_that_stops_and_comes_back_is_picked_up(
    redis_url: str, records: Records
) -> None:
    """Blocking reads time out with nothing to deliver and are made again meanwhile."""
    url = engines.with_query(redis_url, block=0.2)
    await a_producer_that_stops_and_comes_back(url, records, quiet=1.0)


async def test_redis_restart_mid_run_loses_nothing_acknowledged(
    private_redis: engines.RedisServer, records: Records, prefix: str
) -> None:
    url = engines.with_query(private_redis.url, prefix=prefix, claim_idle=2)
    total = 4_000
    consumer = run_recorder(url, records)
    producer: Process | None = None
    try:
        await ready(consumer)
        producer = run_producer(url, records, 0, total, 0.002)
        await until(lambda: len(records.acked()) >= 800, 30, "800 acknowledged sends")
        private_redis.kill()  # a crash: only what was fsynced survives (appendfsync always)
        await asyncio.sleep(1.0)
        private_redis.start()
        assert await asyncio.to_thread(producer.wait, 60) == 0, producer.output
        assert "producer done" in producer.output
        assert records.failed() == [], "sends waited for the server instead of failing"
        acked = records.acked()
        assert acked == set(range(total))
        await until(lambda: acked <= set(records.processed()), 60, "every acknowledged message")
        async with SignalBus.from_url(url, signals=[PING]) as bus:
            answer = await bus.ping.call("test", n=7, timeout=10)
        assert answer == {"pid": consumer.popen.pid, "n": 7}, "the bus subscribed again"
        assert stop(consumer) == 0, consumer.output
    finally:
        consumer.kill()
        if producer is not None:
            producer.kill()
    assert "subscribed again" in consumer.output
    assert "connected to" in consumer.output and "again" in consumer.output


async def test_supervisor_restarts_a_killed_agent_process(redis_url: str, records: Records) -> None:
    supervisor = run_recorder(redis_url, records, "--processes", "--log-level", "INFO")
    try:
        line = await ready(supervisor, rf"started {RECORDER} \(pid \d+\)")
        pid = int(re.findall(r"pid (\d+)", line)[0])
        await ready(supervisor)
        os.kill(pid, signal.SIGKILL)
        await ready(supervisor, r"exited with -9; restarting")

        def restarted() -> int | None:
            found = re.findall(rf"started {RECORDER} \(pid (\d+)\)", supervisor.output)
            return int(found[-1]) if len(found) > 1 else None

        new_pid = await until(restarted, 20, "a new child")
        assert new_pid != pid
        async with QueueBroker.from_url(redis_url, queues=[JOBS]) as broker:
            await broker.jobs.send({"n": 42})
            await until(lambda: 42 in records.by_pid(new_pid), 20, "the new child to consume")
        assert stop(supervisor) == 0, supervisor.output
    finally:
        supervisor.kill()
    assert f"{RECORDER} stopped (exit 0)" in supervisor.output

"""Fault tests with real processes: a consumer SIGKILLed mid-run, a producer that goes and
comes back. The recorders' bus is memory:// (Kafka carries no signals; these tests are
about the queue)."""

from __future__ import annotations

import asyncio

import pytest

from microhive import QueueBroker

from ..cli.helpers import Process
from ..fault_agents import JOBS
from ..nats.test_processes import ready, stop, until
from .conftest import Records

pytestmark = pytest.mark.slow

RECORDER = "tests.fault_agents:Recorder"


def run_recorder(url: str, records: Records) -> Process:
    return Process(
        "-m", "microhive", "run", RECORDER, "--bus", "memory://", "--broker", url,
        "--grace-period", "1", env={"MH_TEST_RECORD": str(records.base)},
    )  # fmt: skip


def run_producer(url: str, records: Records, first: int, count: int, pause: float) -> Process:
    return Process(
        "-m", "tests.fault_agents", url, str(first), str(count), str(records.base), "4", str(pause)
    )


async def _empty(broker: QueueBroker) -> bool:
    return await broker.jobs.length() == 0


async def test_sigkill_of_a_consumer_process_mid_run_loses_nothing(
    kafka_url: str, records: Records
) -> None:
    total = 10_000
    first = run_recorder(kafka_url, records)
    second = run_recorder(kafka_url, records)
    try:
        await ready(first)
        await ready(second)
        async with QueueBroker.from_url(kafka_url, queues=[JOBS]) as broker:

            async def send(start: int) -> None:
                for n in range(start, total, 50):
                    await broker.jobs.send({"n": n, "pause": 0.004})

            await asyncio.gather(*(send(k) for k in range(50)))
            pid = first.popen.pid
            await until(lambda: len(records.by_pid(pid)) >= 1000, 60, "1,000 processed by one")
            first.popen.kill()  # SIGKILL, mid-run: handlers running, commits not yet sent
            first.wait(timeout=10)
            processed_by_killed = records.by_pid(first.popen.pid)
            await until(lambda: set(records.processed()) >= set(range(total)), 90, "every message")
            await until(lambda: _empty(broker), 20, "an empty queue")
            assert await broker.jobs.dead_letters() == []
        assert stop(second) == 0, second.output
    finally:
        first.kill()
        second.kill()
    processed = records.processed()
    assert set(processed) == set(range(total)), "every message processed at least once"
    assert processed_by_killed, "the killed consumer had taken part"
    assert records.by_pid(second.popen.pid)
    duplicates = sum(count - 1 for count in processed.values())
    print(f"SIGKILL after {len(processed_by_killed)}: {duplicates} of {total} processed twice")
    # What the killed process processed after its last commit (commit_interval 0.5 s while
    # busy, at under 2,000 messages/s) plus what it held: below this bound.
    assert duplicates <= 2_500, f"{duplicates} messages processed twice"


async def test_a_producer_that_stops_and_comes_back_is_picked_up(
    kafka_url: str, records: Records
) -> None:
    consumer = run_recorder(kafka_url, records)
    try:
        await ready(consumer)
        producer = run_producer(kafka_url, records, 0, 300, 0.001)
        assert await asyncio.to_thread(producer.wait, 60) == 0, producer.output
        await until(lambda: set(records.processed()) >= set(range(300)), 30, "the first 300")
        await asyncio.sleep(3.0)  # idle: fetches come back empty, heartbeats go on
        again = run_producer(kafka_url, records, 300, 300, 0.001)
        assert await asyncio.to_thread(again.wait, 60) == 0, again.output
        await until(lambda: set(records.processed()) >= set(range(600)), 30, "the next 300")
        assert set(records.by_pid(consumer.popen.pid)) == set(range(600))
        assert records.failed() == []
        assert stop(consumer) == 0, consumer.output
    finally:
        consumer.kill()

"""The test side of the engines' fault tests: agents and producers as real processes
(``tests.fault_agents``), and what they recorded.

Every engine's ``test_processes.py`` uses these, so a SIGKILL test or a server restart
reads the same on every engine.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from microhive import QueueBroker, SignalBus
from microhive.testing import eventually

from .cli.helpers import Process
from .fault_agents import JOBS, PING

RECORDER = "tests.fault_agents:Recorder"


class Records:
    """Lines that consumer processes appended to ``<base>.<pid>`` files, and what producers
    wrote to ``<base>.acked`` / ``<base>.failed``."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def files(self) -> list[Path]:
        return sorted(self.base.parent.glob(f"{self.base.name}.*"))

    def processed(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for path in self.files():
            if path.suffix in (".acked", ".failed"):
                continue
            counts.update(int(line) for line in path.read_text().split())
        return counts

    def by_pid(self, pid: int) -> list[int]:
        path = self.base.parent / f"{self.base.name}.{pid}"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def acked(self) -> set[int]:
        path = self.base.parent / f"{self.base.name}.acked"
        return {int(line) for line in path.read_text().split()} if path.exists() else set()

    def failed(self) -> list[str]:
        path = self.base.parent / f"{self.base.name}.failed"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "processed")


def run_recorder(url: str, records: Records, *extra: str, bus: str | None = None) -> Process:
    """``microhive run`` of the recording consumer on ``url`` (``bus``: another bus for a
    broker-only engine such as Kafka)."""
    where = ["--transport", url] if bus is None else ["--bus", bus, "--broker", url]
    return Process(
        "-m", "microhive", "run", RECORDER, *where, "--grace-period", "1", *extra,
        env={"MH_TEST_RECORD": str(records.base)},
    )  # fmt: skip


def run_producer(url: str, records: Records, first: int, count: int, pause: float) -> Process:
    """Send ``first..first+count-1`` from a process of its own (4 senders)."""
    return Process(
        "-m", "tests.fault_agents", url, str(first), str(count), str(records.base), "4", str(pause)
    )


async def ready(process: Process, pattern: str = r"running 1 agent", timeout: float = 20) -> str:
    return await asyncio.to_thread(process.wait_for_line, pattern, timeout)


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` (sync or async) until truthy; a clear failure after ``timeout``."""
    try:
        return await eventually(condition, timeout, 0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def stop(process: Process) -> int:
    """SIGTERM, then the exit code (a graceful stop exits 0)."""
    process.popen.send_signal(signal.SIGTERM)
    return process.wait(timeout=20)


async def a_producer_that_stops_and_comes_back(
    url: str, records: Records, *, quiet: float, bus: str | None = None
) -> None:
    """The scenario every engine passes: a consumer process runs; a producer process sends
    300 messages and exits; after ``quiet`` seconds with nothing to deliver (long enough for
    the engine's reads to time out and be made again) another producer sends 300 more. The
    same consumer, never restarted, processes all 600."""
    consumer = run_recorder(url, records, bus=bus)
    try:
        await ready(consumer)
        producer = run_producer(url, records, 0, 300, 0.001)
        assert await asyncio.to_thread(producer.wait, 60) == 0, producer.output
        await until(lambda: set(records.processed()) >= set(range(300)), 30, "the first 300")
        await asyncio.sleep(quiet)
        again = run_producer(url, records, 300, 300, 0.001)
        assert await asyncio.to_thread(again.wait, 60) == 0, again.output
        await until(lambda: set(records.processed()) >= set(range(600)), 30, "the next 300")
        assert set(records.by_pid(consumer.popen.pid)) == set(range(600))
        assert records.failed() == []
        assert stop(consumer) == 0, consumer.output
    finally:
        consumer.kill()


async def a_consumer_killed_mid_run(
    url: str,
    records: Records,
    *,
    kill_when: Callable[[Records, int], bool],
    max_duplicates: int,
    pause: float = 0.003,
    empty_within: float = 10,
    bus: str | None = None,
) -> Process:
    """The scenario every engine passes: two consumer processes share 10,000 messages; one
    is SIGKILLed mid-run (handlers running, deliveries prefetched, acks or commits not yet
    sent) once ``kill_when(records, its pid)`` holds. Every message is processed at least
    once, none is dead-lettered, the queue ends empty, at most ``max_duplicates`` are
    processed twice, and the survivor stops cleanly. Returns the survivor."""
    total = 10_000
    first = run_recorder(url, records, bus=bus)
    second = run_recorder(url, records, bus=bus)
    try:
        await ready(first)
        await ready(second)
        async with QueueBroker.from_url(url, queues=[JOBS]) as broker:

            async def send(start: int) -> None:
                for n in range(start, total, 50):
                    await broker.jobs.send({"n": n, "pause": pause})

            await asyncio.gather(*(send(k) for k in range(50)))
            pid = first.popen.pid
            await until(lambda: kill_when(records, pid), 60, "the moment to kill")
            first.popen.kill()
            first.wait(timeout=10)
            processed_by_killed = records.by_pid(pid)
            await until(lambda: set(records.processed()) >= set(range(total)), 90, "every message")
            await until(lambda: _length_is_zero(broker), empty_within, "an empty queue")
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
    assert duplicates <= max_duplicates, f"{duplicates} messages processed twice"
    return second


async def _length_is_zero(broker: QueueBroker) -> bool:
    return await broker.jobs.length() == 0


async def a_server_restarted_mid_run(
    url: str,
    server: Any,
    records: Records,
    *,
    crash: bool,
    max_duplicates: int,
    recovered: tuple[str, ...],
) -> None:
    """The scenario of every engine with a private server: a consumer process runs and a
    producer process sends 4,000 messages; the server (``server.kill()`` if ``crash``, else
    ``server.stop()``) goes away mid-run and comes back. Sends wait for it instead of
    failing, every acknowledged message is processed, at most ``max_duplicates`` twice, the
    bus subscribes again (a call is answered by the same consumer), and the consumer's log
    says what ``recovered`` lists."""
    total = 4_000
    consumer = run_recorder(url, records)
    producer: Process | None = None
    try:
        await ready(consumer)
        producer = run_producer(url, records, 0, total, 0.002)
        await until(lambda: len(records.acked()) >= 800, 30, "800 acknowledged sends")
        await asyncio.to_thread(server.kill if crash else server.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        assert await asyncio.to_thread(producer.wait, 120) == 0, producer.output
        assert "producer done" in producer.output
        assert records.failed() == [], "sends waited for the server instead of failing"
        acked = records.acked()
        assert acked == set(range(total))
        await until(lambda: acked <= set(records.processed()), 60, "every acknowledged message")
        duplicates = sum(count - 1 for count in records.processed().values())
        how = "SIGKILL" if crash else "SIGTERM"
        print(f"server {how} mid-run: {duplicates} of {total} processed twice")
        assert duplicates <= max_duplicates, f"{duplicates} messages processed twice"
        async with SignalBus.from_url(url, signals=[PING]) as bus:
            answer = await bus.ping.call("test", n=7, timeout=30)
        assert answer == {"pid": consumer.popen.pid, "n": 7}, "the bus subscribed again"
        assert stop(consumer) == 0, consumer.output
    finally:
        consumer.kill()
        if producer is not None:
            producer.kill()
    for line in recovered:
        assert line in consumer.output, line

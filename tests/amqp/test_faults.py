"""Fault tests on a private RabbitMQ node: consumers SIGKILLed, the node itself crashed.

Nothing durable may be lost: every one of 10,000 messages is processed at least once
(duplicates are allowed — delivery is at least once), and the queue ends empty. Consumers are
real processes (tests/amqp/worker.py); the node is SIGKILLed and started again on the same
data directory, so only what RabbitMQ confirmed survives.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from microhive import (
    MicroAgent,
    Namespace,
    Queue,
    QueueBroker,
    Signal,
    SignalBus,
    receiver,
)
from microhive.envelope import new_id
from microhive.sync import Publisher
from microhive.transports.amqp import LinkDown

from ..scenarios import recovery
from .conftest import eventually
from .server import RabbitNode

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 10_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node() -> Iterator[RabbitNode]:
    directory = Path(tempfile.mkdtemp(prefix="microhive-rabbit-"))
    rabbit = RabbitNode(directory)
    try:
        rabbit.start()
        yield rabbit
    finally:
        rabbit.kill()
        shutil.rmtree(directory, ignore_errors=True)


class WorkerProcess:
    """tests/amqp/worker.py in a process of its own."""

    def __init__(self, url: str, queue: str, output: Path, concurrency: int = 20) -> None:
        self.output = output
        self.log = output.with_suffix(".log")
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.amqp.worker",
                    url,
                    queue,
                    str(output),
                    str(concurrency),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == b"ready":
                self._ready.set()

    async def ready(self, timeout: float = 30) -> None:
        if not await asyncio.to_thread(self._ready.wait, timeout):
            raise AssertionError(f"worker not ready: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)


def processed(outputs: list[Path]) -> list[int]:
    seen = []
    for output in outputs:
        if output.exists():
            seen += [int(line) for line in output.read_text().split()]
    return seen


async def wait_all(outputs: list[Path], timeout: float) -> list[int]:
    return await eventually(  # type: ignore[no-any-return]
        lambda: (seen := processed(outputs)) and len(set(seen)) >= TOTAL and seen, timeout
    )


async def _empty(broker: QueueBroker) -> bool:
    return await broker.queue("work").length() == 0


async def send_all(broker: QueueBroker, queue: str, numbers: range, chunk: int = 500) -> None:
    handle = broker.queue(queue)
    for start in range(numbers.start, numbers.stop, chunk):
        await asyncio.gather(
            *(handle.send({"n": n}) for n in range(start, min(start + chunk, numbers.stop)))
        )


async def test_sigkill_of_a_consumer_mid_run_loses_nothing(
    node: RabbitNode, tmp_path: Path
) -> None:
    url = f"{node.url}?prefix=kill{new_id()[:6]}."
    queue = Queue("work")
    broker = QueueBroker.from_url(url, queues=[queue])
    outputs = [tmp_path / f"worker{i}.txt" for i in range(3)]
    workers: list[WorkerProcess] = []
    try:
        await send_all(broker, "work", range(TOTAL))
        assert await broker.work.length() == TOTAL
        workers = [WorkerProcess(url, "work", outputs[i]) for i in range(2)]
        for worker in workers:
            await worker.ready()
        await eventually(lambda: len(processed(outputs)) >= TOTAL // 3, 60)
        workers[0].kill()  # mid-run, holding up to 20 unacknowledged messages
        killed_at = len(processed(outputs[:1]))
        workers.append(WorkerProcess(url, "work", outputs[2]))
        await workers[2].ready()
        seen = await wait_all(outputs, 90)
        assert sorted(set(seen)) == list(range(TOTAL)), "every message was processed"
        assert 0 < killed_at < TOTAL
        await eventually(lambda: _empty(broker), 30)
        assert [worker.stop() for worker in workers[1:]] == [0, 0]
        assert await broker.work.dead_letters() == []
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
        await broker.close()


async def test_node_crash_and_restart_mid_run_loses_nothing(
    node: RabbitNode, tmp_path: Path
) -> None:
    url = f"{node.url}?prefix=crash{new_id()[:6]}.&retry_timeout=90"
    broker = QueueBroker.from_url(url, queues=[Queue("work")])
    outputs = [tmp_path / f"worker{i}.txt" for i in range(2)]
    workers = [WorkerProcess(url, "work", output) for output in outputs]
    try:
        for worker in workers:
            await worker.ready()
        await send_all(broker, "work", range(TOTAL // 3))
        restart = asyncio.ensure_future(asyncio.to_thread(_crash_and_restart, node))
        await send_all(broker, "work", range(TOTAL // 3, TOTAL), chunk=200)  # waits it out
        await restart
        seen = await wait_all(outputs, 120)
        assert sorted(set(seen)) == list(range(TOTAL)), "every message was processed"
        await eventually(lambda: _empty(broker), 60)
        assert [worker.stop() for worker in workers] == [0, 0]
        assert await broker.work.dead_letters() == []
    finally:
        for worker in workers:
            if worker.process.poll() is None:
                worker.kill()
        await broker.close()


def _crash_and_restart(node: RabbitNode) -> None:
    node.kill()
    node.start()


def _restart_cleanly(node: RabbitNode) -> None:
    node.stop()
    node.start()


SIGNALS = Namespace([Signal("ping", ["n"])], kind="signal")


class Listener(MicroAgent):
    @receiver(SIGNALS.ping)
    async def ping(self, n: int) -> int:
        self.settings["seen"].append(n)
        return n + 1


async def test_bus_and_sync_publisher_recover_after_a_restart(node: RabbitNode) -> None:
    url = f"{node.url}?prefix=bus{new_id()[:6]}.&retry_timeout=60"
    listening = SignalBus.from_url(url, signals=SIGNALS)
    calling = SignalBus.from_url(url, signals=SIGNALS)
    broker = QueueBroker.from_url(url, queues=[Queue("jobs")])
    publisher = Publisher(url)
    agent = Listener(listening, settings={"seen": []})
    try:
        # RabbitMQ 3.10 can lose a queue declared moments before a crash (with what was
        # confirmed into it): declare it, and have a clean restart put it on disk first
        await broker.jobs.length()
        await asyncio.to_thread(_restart_cleanly, node)
        async with agent:
            assert await calling.ping.call("me", n=1, timeout=5) == 2
            await asyncio.to_thread(publisher.send, "jobs", {"n": 1})
            await asyncio.to_thread(_crash_and_restart, node)
            # sends wait for the reconnect and declare their queue again on the new connection
            # (test_recovery.py checks that without a crash); the listener's queue and
            # bindings are declared again
            await asyncio.to_thread(publisher.send, "jobs", {"n": 2})
            async with asyncio.timeout(30):
                while True:
                    try:
                        assert await calling.ping.call("me", n=41, timeout=1) == 42
                        break
                    except TimeoutError:
                        continue
            await calling.ping.send("me", n=7)
            await eventually(lambda: 7 in agent.settings["seen"], 10)
        assert await broker.jobs.length() == 2, "both confirmed sends survived the crash"
    finally:
        await asyncio.to_thread(publisher.close)
        for item in (broker, calling, listening):
            await item.close()


async def test_send_during_an_outage_gives_up_then_recovers(node: RabbitNode) -> None:
    """While the node is down a send waits for the link (in a loop) until retry_timeout,
    then raises LinkDown; once the node is back the same broker sends again by itself."""
    url = f"{node.url}?prefix=outage{new_id()[:6]}.&retry_timeout=1.5"
    broker = QueueBroker.from_url(url, queues=[Queue("jobs")])
    try:
        await broker.jobs.send({"n": 1})
        await asyncio.to_thread(node.kill)
        with pytest.raises(LinkDown, match=r"unreachable|lost"):
            await broker.jobs.send({"n": 2})
        await asyncio.to_thread(node.start)
        await eventually(lambda: recovery.sends(broker, {"n": 3}), 30)
        # The send after recovery is in the queue. {"n": 1} is not asserted: RabbitMQ 3.10
        # SIGKILLed within moments of a queue's first declaration can lose the queue record
        # and, with it, the message it had confirmed (the node's behaviour, see c4eb61c).
        assert await broker.jobs.length() >= 1
    finally:
        await broker.close()

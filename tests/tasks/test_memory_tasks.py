"""Task options that depend on time, on the in-process store: result TTL, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from microhive import (
    JobState,
    MicroAgent,
    Namespace,
    Queue,
    QueueBroker,
    TaskFailed,
    private_catalog,
    task,
)
from microhive.envelope import new_id

with private_catalog("memory-tasks"):
    queues = Namespace(
        [
            Queue("short_lived", providing_args=["n"]),
            Queue("sleepy", providing_args=["n"]),
            Queue("gated", providing_args=["n"]),
        ],
        kind="queue",
    )


class Timed(MicroAgent):
    @task(queues.short_lived, result_ttl=0.3)
    async def short_lived(self, n: int) -> int:
        return n

    @task(queues.gated, timeout=None)
    async def gated(self, n: int) -> int:
        self.settings["started"].set()
        await self.settings["gate"].wait()
        return n

    @task(queues.sleepy, timeout=0.1, retries=1, backoff=0.05)
    async def sleepy(self, n: int) -> int:
        await asyncio.sleep(n)
        return n


async def test_a_result_expires_after_its_ttl() -> None:
    broker = QueueBroker.from_url(f"memory://ttl-{new_id()[:8]}", queues=queues)
    async with Timed(None, broker):
        job = await broker.short_lived.submit(n=7)
        assert await job.result(timeout=5) == 7
        await asyncio.sleep(0.5)
        assert await job.status() is JobState.UNKNOWN
    await broker.close()


async def test_a_timeout_is_retried_then_fails_the_job_not_revokes_it() -> None:
    broker = QueueBroker.from_url(f"memory://timeout-{new_id()[:8]}", queues=queues)
    async with Timed(None, broker):
        job = await broker.sleepy.submit(n=5)
        with pytest.raises(TaskFailed, match="HandlerTimeout") as caught:
            await job.result(timeout=10)
        assert "timeout of 0.1 s" in caught.value.remote_message
        record = await job.record()
        assert record is not None and record.attempt == 2 and record.state is JobState.FAILED
    await broker.close()


async def test_a_shutdown_mid_task_runs_it_again_later() -> None:
    """Cancelled by a shutdown is not revoked: the message goes back and runs again."""
    broker = QueueBroker.from_url(f"memory://shutdown-{new_id()[:8]}", queues=queues)
    first = Timed(None, broker, settings={"started": asyncio.Event(), "gate": asyncio.Event()})
    await first.start()
    job = await broker.gated.submit(n=3)
    await asyncio.wait_for(first.settings["started"].wait(), 5)
    assert await job.status() is JobState.STARTED
    await first.stop(grace_period=0)
    assert await job.status() is JobState.STARTED
    opened = asyncio.Event()
    opened.set()
    async with Timed(None, broker, settings={"started": asyncio.Event(), "gate": opened}):
        assert await job.result(timeout=5) == 3
    record = await job.record()
    assert record is not None and record.attempt == 1  # redelivered, not retried
    await broker.close()

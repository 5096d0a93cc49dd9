"""The Jobs panel and the queue table with a real ``@task`` agent: jobs an agent ran (their
states, progress and errors) and the queue's consumers, on memory:// (the console mounted
in-process reads the hive's own store) and on Redis (the store given as ``results``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from microhive import MicroAgent, Queue, QueueBroker, SignalBus, current_job, task
from microhive.console import console_app
from microhive.envelope import new_id
from microhive.tasks.stores import store_for
from microhive.testing import eventually
from tests import engines
from tests.console.server import events, serving
from tests.contract.result_stores import cleanup

TOKEN = "tasks-test-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}

ADD = Queue("console_tasks_add", providing_args=["x", "y"])
SLOW = Queue("console_tasks_slow", providing_args=["steps"])
BROKEN = Queue("console_tasks_broken", providing_args=[])


class Worker(MicroAgent):
    release: asyncio.Event

    @task(ADD)
    async def add(self, x: int, y: int) -> int:
        return x + y

    @task(SLOW)
    async def slow(self, steps: int) -> str:
        await current_job().progress({"done": 1, "of": steps})
        await Worker.release.wait()
        return "finished"

    @task(BROKEN)
    async def broken(self) -> None:
        raise RuntimeError("failed on purpose")


@pytest.fixture(params=["memory", "redis"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://console-tasks-{new_id()[:8]}"
        return
    engines.require_redis()
    prefix = f"mhconsole-tasks-{new_id()[:8]}:"
    made = engines.with_query(engines.REDIS_URL, prefix=prefix)
    yield made
    await cleanup(made)
    await engines.delete_prefix(engines.REDIS_URL, prefix)


async def jobs_of(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    answer = await client.get("/api/jobs", headers=BEARER)
    assert answer.status_code == 200, answer.text
    return {job["id"]: job for job in answer.json()["jobs"]}


async def test_the_jobs_panel_shows_what_a_task_agent_ran(url: str) -> None:
    Worker.release = asyncio.Event()
    bus = SignalBus.from_url(url)
    broker = QueueBroker.from_url(url, queues=[ADD, SLOW, BROKEN])
    worker = Worker(bus, broker, grace_period=3)
    await worker.start()
    results = None if url.startswith("memory") else store_for(broker)
    app = console_app(
        bus=bus, broker=broker, results=results, queues=[ADD.name, SLOW.name, BROKEN.name],
        token=TOKEN, every=0.2,
    )  # fmt: skip
    try:
        added = await broker.submit(ADD.s(x=2, y=3))
        slow = await broker.submit(SLOW.s(steps=4))
        broken = await broker.submit(BROKEN.s())
        async with serving(app) as client:
            assert await added.result(timeout=10) == 5

            async def settled() -> bool:
                found = await jobs_of(client)
                return (
                    found.get(broken.id, {}).get("state") == "failed"
                    and found.get(slow.id, {}).get("progress") is not None
                )

            await eventually(settled, timeout=15)
            found = await jobs_of(client)
            assert found[added.id]["state"] == "succeeded" and found[added.id]["result"] == 5
            assert found[slow.id]["state"] == "started"
            assert found[slow.id]["progress"] == {"done": 1, "of": 4}
            assert "RuntimeError: failed on purpose" in found[broken.id]["error"]

            async def slow_row() -> dict[str, Any] | None:
                listed = (await client.get("/api/queues", headers=BEARER)).json()
                row: dict[str, Any] = {q["queue"]: q for q in listed}[SLOW.name]
                return row if row["in_flight"] == 1 else None

            row = await eventually(slow_row, timeout=15)
            assert row["consumers"] == 1 and row["dead"] == 0, row
            seen = await events(client, 3, **BEARER)
            ticks = [data for name, data in seen if name == "tick" and "jobs" in data]
            assert ticks and ticks[-1]["jobs"]["counts"].get("started") == 1, seen
            Worker.release.set()
            assert await slow.result(timeout=10) == "finished"
    finally:
        Worker.release.set()
        await worker.stop()
        await bus.close()
        await broker.close()

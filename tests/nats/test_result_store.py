"""The NATS result store through faults: a server restart under waiters and writers, and a
server that is not there. The rules themselves are in tests/contract/test_result_stores.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microhive.envelope import new_id
from microhive.tasks.store import JobRecord, JobState
from microhive.tasks.stores.nats import NatsStore
from microhive.transports.links import LinkDown

from .. import engines

GUARD = 60.0  # a failure guard only


@pytest.fixture
def server(tmp_path: Path) -> Iterator[engines.NatsServer]:
    """A private nats-server with JetStream on files: the bucket survives a kill."""
    instance = engines.NatsServer(tmp_path / "nats")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def stores(server: engines.NatsServer) -> AsyncIterator[tuple[NatsStore, NatsStore]]:
    url = engines.with_query(server.url, reconnect_wait=0.2)
    waiter, worker = NatsStore(url), NatsStore(url)
    yield waiter, worker
    await waiter.close()
    await worker.close()


def job() -> JobRecord:
    return JobRecord(id=new_id(), queue="q", created_at=time.time())


async def test_waiters_survive_a_restart_and_see_a_result_written_after_it(
    server: engines.NatsServer, stores: tuple[NatsStore, NatsStore]
) -> None:
    waiter, worker = stores
    records = [job() for _ in range(3)]
    for record in records:
        await worker.create(record)
    waiting = [asyncio.create_task(waiter.wait(r.id, GUARD)) for r in records]
    await asyncio.sleep(0.5)
    assert not any(task.done() for task in waiting)
    server.kill()
    await asyncio.sleep(0.5)
    await asyncio.to_thread(server.start)
    done = [await worker.transition(r.id, JobState.SUCCEEDED, {"result": b"1"}) for r in records]
    assert await asyncio.gather(*waiting) == done


async def test_a_result_written_during_an_outage_reaches_its_waiter(
    server: engines.NatsServer, stores: tuple[NatsStore, NatsStore]
) -> None:
    waiter, worker = stores
    record = job()
    await worker.create(record)
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await asyncio.sleep(0.5)
    server.kill()
    writing = asyncio.create_task(worker.transition(record.id, JobState.FAILED))  # retries
    await asyncio.sleep(0.5)
    await asyncio.to_thread(server.start)
    done = await writing
    assert done is not None and done.state == JobState.FAILED
    assert await waiting == done
    assert await worker.transition(record.id, JobState.SUCCEEDED) is None  # written once


async def test_a_server_that_is_not_there_is_a_clear_error() -> None:
    url = f"nats://127.0.0.1:{engines.free_port()}?connect_timeout=0.5"
    store = NatsStore(url)
    try:
        with pytest.raises(LinkDown, match=r"127\.0\.0\.1"):
            await store.get("anything")
    finally:
        await store.close()

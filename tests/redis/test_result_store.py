"""The Redis result store through faults: a server restart under waiters and writers,
connections killed, a server that is not there. The rules themselves are in
tests/contract/test_result_stores.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from microhive.envelope import new_id
from microhive.tasks.store import JobRecord, JobState
from microhive.tasks.stores.redis import RedisStore
from microhive.tasks.stores.redis_scripts import TRANSITION
from microhive.testing import eventually
from microhive.transports.links import LinkDown
from microhive.transports.redis.scripts import Script

from .. import engines
from .servers import Sentinel, UnixRedis
from .test_topologies import _in_sync, sentinel  # noqa: F401 - the fixture

GUARD = 60.0  # a failure guard only


@pytest.fixture
def server(tmp_path: Path) -> Iterator[engines.RedisServer]:
    """A private Redis with the append-only file (fsync always): records survive a kill."""
    instance = engines.RedisServer(tmp_path / "redis", appendonly=True)
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def stores(server: engines.RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    waiter, worker = RedisStore(server.url), RedisStore(server.url)
    yield waiter, worker
    await waiter.close()
    await worker.close()


def job() -> JobRecord:
    return JobRecord(id=new_id(), queue="q", created_at=time.time())


async def restart(server: engines.RedisServer, down: float = 0.5) -> None:
    server.kill()
    await asyncio.sleep(down)  # what happens meanwhile is what is tested
    await asyncio.to_thread(server.start)


async def test_waiters_survive_a_restart_and_see_a_result_written_after_it(
    server: engines.RedisServer,
    stores: tuple[RedisStore, RedisStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "microhive")
    waiter, worker = stores
    records = [job() for _ in range(3)]
    for record in records:
        await worker.create(record)
    waiting = [asyncio.create_task(waiter.wait(r.id, GUARD)) for r in records]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in waiting)
    await restart(server)
    # written after the restart: whether the waiter hears the PUBLISH on its new subscription
    # or reads the record when it checks again, it must return it
    done = [await worker.transition(r.id, JobState.SUCCEEDED, {"result": b"1"}) for r in records]
    assert await asyncio.gather(*waiting) == done
    assert "result wake-ups lost" in caplog.text


async def test_a_result_written_while_the_waiter_reconnects_is_not_missed(
    server: engines.RedisServer, stores: tuple[RedisStore, RedisStore]
) -> None:
    waiter, worker = stores
    record = job()
    await worker.create(record)
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await asyncio.sleep(0.3)
    server.kill()
    writing = asyncio.create_task(worker.transition(record.id, JobState.FAILED))  # retries
    await asyncio.sleep(0.3)
    await asyncio.to_thread(server.start)
    done = await writing
    assert done is not None and done.state == JobState.FAILED
    assert await waiting == done


async def test_every_connection_killed_then_waiting_goes_on(
    server: engines.RedisServer, stores: tuple[RedisStore, RedisStore]
) -> None:
    waiter, worker = stores
    first, second = job(), job()
    await worker.create(first)
    await worker.create(second)
    waiting = asyncio.create_task(waiter.wait(first.id, GUARD))
    await asyncio.sleep(0.3)
    admin: Any = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        killed += await admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
    finally:
        await admin.aclose()
    assert killed >= 2
    done = await worker.transition(first.id, JobState.SUCCEEDED)
    assert await waiting == done
    # and the store keeps working afterwards: a new waiter on the new subscription
    later = asyncio.create_task(waiter.wait(second.id, GUARD))
    await asyncio.sleep(0.3)
    assert await worker.transition(second.id, JobState.REVOKED) == await later


async def test_a_transition_retried_after_a_lost_reply_is_recognised(
    server: engines.RedisServer, stores: tuple[RedisStore, RedisStore]
) -> None:
    """The final write happened, its reply was lost: the retry must not report a lost race."""
    _, worker = stores
    record = job()
    await worker.create(record)
    replies = 0
    original = worker._attempt

    async def reply_lost(script: Script, keys: tuple[str, ...], args: tuple[Any, ...]) -> Any:
        nonlocal replies
        answer = await original(script, keys, args)
        if script is TRANSITION:
            replies += 1
            if replies == 1:  # applied in Redis; the caller never hears it
                raise LinkDown("connection lost before the reply")
        return answer

    worker._attempt = reply_lost  # type: ignore[method-assign]
    done = await worker.transition(record.id, JobState.SUCCEEDED, {"result": b"7"})
    assert done is not None and done.result == b"7" and replies == 2
    assert await worker.get(record.id) == done


async def test_a_server_that_is_not_there_is_a_clear_error() -> None:
    url = engines.with_query(f"redis://127.0.0.1:{engines.free_port()}/0", retry_timeout=0.3)
    store = RedisStore(url)
    try:
        with pytest.raises(LinkDown, match=r"127\.0\.0\.1"):
            await store.get("anything")
    finally:
        await store.close()


async def waited_and_written(waiter: RedisStore, worker: RedisStore) -> None:
    """One job: created, waited for, finished; the waiter gets what the worker wrote."""
    record = job()
    assert await worker.create(record)
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await asyncio.sleep(0.3)
    done = await worker.transition(record.id, JobState.SUCCEEDED, {"result": b"1"})
    assert done is not None and await waiting == done


async def test_a_store_over_a_unix_socket(tmp_path: Path) -> None:
    server = UnixRedis(tmp_path / "redis")
    server.start()
    try:
        url = f"redis+unix://{server.socket}?db=1&prefix=results:"
        waiter, worker = RedisStore(url), RedisStore(url)
        try:
            await waited_and_written(waiter, worker)
        finally:
            await waiter.close()
            await worker.close()
    finally:
        server.stop()


async def test_a_store_over_sentinel_follows_a_failover(
    sentinel: tuple[Sentinel, Any, Any],  # noqa: F811 - the fixture, imported
) -> None:
    watcher, master, replica = sentinel
    await eventually(lambda: _in_sync(replica.port), 30)
    await eventually(lambda: watcher.ask("SENTINEL", "REPLICAS", "hive"), 30)
    url = f"redis+sentinel://127.0.0.1:{watcher.port}/hive?prefix=results:"
    waiter, worker = RedisStore(url), RedisStore(url)
    try:
        await waited_and_written(waiter, worker)
        record = job()
        await worker.create(record)
        admin: Any = aioredis.Redis(host="127.0.0.1", port=master.port)
        async with admin:
            assert await admin.execute_command("WAIT", 1, 10_000) == 1  # the record replicated
        waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
        await asyncio.sleep(0.3)
        master.kill()
        done = await worker.transition(record.id, JobState.FAILED)  # waits through the failover
        assert watcher.master_port() == replica.port, "written to the promoted replica"
        assert done is not None and await waiting == done
        await waited_and_written(waiter, worker)  # and on it goes
    finally:
        await waiter.close()
        await worker.close()


async def numsub(server: engines.RedisServer, channel: str) -> int:
    admin: Any = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        reply = await admin.execute_command("PUBSUB", "NUMSUB", channel)
    finally:
        await admin.aclose()
    return int(reply[1])


async def test_a_submitter_waits_on_its_inbox_not_on_a_channel_per_job(
    server: engines.RedisServer, stores: tuple[RedisStore, RedisStore]
) -> None:
    submitter, worker = stores
    record = job()
    assert await submitter.create(record, awaited=True)
    inbox = (await worker.get(record.id) or record).meta["notify"]
    waiting = asyncio.create_task(submitter.wait(record.id, GUARD))
    await asyncio.sleep(0.3)
    assert await numsub(server, inbox) == 1
    assert await numsub(server, submitter.key(record.id)) == 0  # no SUBSCRIBE of its own
    done = await worker.transition(record.id, JobState.SUCCEEDED, {"result": b"3"})
    assert done is not None and await waiting == done
    # finished before anyone waits: kept by the inbox, then read from the store once taken
    early = job()
    assert await submitter.create(early, awaited=True)
    finished = await worker.transition(early.id, JobState.FAILED, {"error_message": "no"})
    assert await submitter.wait(early.id, GUARD) == finished
    assert await submitter.wait(early.id, GUARD) == finished


async def test_jobs_expected_on_a_lost_inbox_are_waited_for_another_way(
    server: engines.RedisServer, stores: tuple[RedisStore, RedisStore]
) -> None:
    """The inbox's connection is killed while waiters wait and results are published: none of
    them may be lost (they read the record, then wait on the job's own channel)."""
    submitter, worker = stores
    records = [job() for _ in range(4)]
    for record in records:
        assert await submitter.create(record, awaited=True)
    waiting = [asyncio.create_task(submitter.wait(r.id, GUARD)) for r in records[:2]]
    await asyncio.sleep(0.3)
    admin: Any = aioredis.Redis(host="127.0.0.1", port=server.port)
    try:
        assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        # published while the inbox is down: to nobody
        done = [
            await worker.transition(r.id, JobState.SUCCEEDED, {"result": b"1"}) for r in records
        ]
    finally:
        await admin.aclose()
    assert await asyncio.gather(*waiting) == done[:2]
    later = [await submitter.wait(r.id, GUARD) for r in records[2:]]  # after the loss
    assert later == done[2:]
    # and the store goes on for new jobs (on the inbox once it is subscribed again)
    fresh = job()
    assert await submitter.create(fresh, awaited=True)
    result = asyncio.create_task(submitter.wait(fresh.id, GUARD))
    await asyncio.sleep(0.1)
    assert await worker.transition(fresh.id, JobState.REVOKED) == await result

"""The memory result store forgets what expired and what nobody waits for (no growth)."""

from __future__ import annotations

import asyncio

from microhive.tasks.store import JobRecord, JobState
from microhive.tasks.stores import memory
from microhive.tasks.stores.memory import MemoryStore


async def test_expired_records_and_groups_are_swept() -> None:
    store = MemoryStore()
    for n in range(memory.SWEEP_EVERY // 2):
        await store.create(JobRecord(id=f"old-{n}", queue="q"), ttl=0.001)
        await store.join(f"group-{n}", "a", 2, ttl=0.001)
    await asyncio.sleep(0.01)
    for n in range(memory.SWEEP_EVERY):
        await store.create(JobRecord(id=f"new-{n}", queue="q"))
    assert not any(key.startswith("old-") for key in store._records)
    assert not store._groups


async def test_no_event_is_kept_once_waiters_are_gone() -> None:
    store = MemoryStore()
    await store.create(JobRecord(id="a", queue="q"))
    assert await store.wait("a", 0.01) is None
    waiters = [asyncio.create_task(store.wait("a", 5)) for _ in range(3)]
    await asyncio.sleep(0)
    await store.transition("a", JobState.SUCCEEDED)
    assert [record.state for record in await asyncio.gather(*waiters) if record] == [
        JobState.SUCCEEDED
    ] * 3
    for n in range(100):
        await store.create(JobRecord(id=f"done-{n}", queue="q", state=JobState.SUCCEEDED))
    assert not store._finished and not store._waiting

"""The rules of microhive/tasks/store.py, checked on every result store: memory, Redis, NATS.

Each test gets a fresh namespace (a key prefix on Redis, a bucket on NATS) and a factory of
stores: two stores are two connections, as two processes would have.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microhive.envelope import new_id
from microhive.tasks.store import (
    FINAL_STATES,
    JobRecord,
    JobState,
    ResultStore,
    decode_record,
    encode_record,
)
from microhive.tasks.stores.memory import MemoryStore

from .. import engines
from .conftest import TRANSPORTS, Transport
from .result_stores import cleanup, open_store

STORES = [t for t in TRANSPORTS if t.name in ("memory", "redis", "nats")]

Stores = Callable[[], Awaitable[ResultStore]]
GUARD = 30.0  # seconds: only ever a failure guard, never a speed requirement
SHORT = 0.5  # seconds: the TTL of what a test lets expire (every store takes fractions)


@pytest.fixture(params=STORES, ids=[t.name for t in STORES])
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(autouse=True)
async def engine(transport: Transport, url: str) -> AsyncIterator[None]:
    """The engine must be reachable (else skip; fail under CI=true); the test's records go."""
    if transport.name == "redis":
        engines.require_redis()
    elif transport.name == "nats":
        engines.require_nats()
    yield
    await cleanup(url)


@pytest.fixture
async def stores(url: str) -> AsyncIterator[Stores]:
    opened: list[ResultStore] = []
    memory = MemoryStore()

    async def make() -> ResultStore:
        if url.startswith("memory://"):
            return memory  # one process: every "connection" is the same store
        store = open_store(url)
        opened.append(store)
        return store

    try:
        yield make
    finally:
        for store in opened:
            await store.close()


@pytest.fixture
async def store(stores: Stores) -> ResultStore:
    return await stores()


def job(queue: str = "q", **fields: Any) -> JobRecord:
    return JobRecord(id=f"job-{new_id()}", queue=queue, created_at=time.time(), **fields)


async def pending(task: asyncio.Task[Any]) -> None:
    """Let ``task`` reach its wait (a pause so the scenario happens; no speed is asserted)."""
    await asyncio.sleep(0.2)
    assert not task.done(), task


# -- create and get ----------------------------------------------------------------------


async def test_create_is_create_if_absent(store: ResultStore) -> None:
    first = job(meta={"by": "first"})
    assert await store.create(first) is True
    assert await store.create(JobRecord(id=first.id, queue="other", meta={"by": "second"})) is False
    assert await store.get(first.id) == first


async def test_get_of_an_unknown_id_is_none(store: ResultStore) -> None:
    assert await store.get(f"nobody-{new_id()}") is None


# -- transitions ---------------------------------------------------------------------------


async def test_transition_sets_the_state_and_the_fields(store: ResultStore) -> None:
    record = job()
    await store.create(record)
    started = await store.transition(record.id, JobState.STARTED, {"attempt": 1, "started_at": 5.5})
    assert started is not None
    assert (started.state, started.attempt, started.started_at) == (JobState.STARTED, 1, 5.5)
    progressed = await store.transition(record.id, None, {"progress": b'{"done": 3}'})
    assert progressed is not None
    assert (progressed.state, progressed.progress) == (JobState.STARTED, b'{"done": 3}')
    assert await store.get(record.id) == progressed
    assert progressed.created_at == record.created_at and progressed.queue == record.queue


async def test_transition_of_a_missing_record_writes_nothing(store: ResultStore) -> None:
    missing = f"nobody-{new_id()}"
    assert await store.transition(missing, JobState.SUCCEEDED, {"result": b"1"}) is None
    assert await store.get(missing) is None


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
async def test_a_final_state_is_written_once(stores: Stores, final: JobState) -> None:
    store, other = await stores(), await stores()
    record = job()
    await store.create(record)
    written = await store.transition(record.id, final, {"result": b"2", "finished_at": 9.0})
    assert written is not None and written.state == final
    for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.STARTED, None):
        assert await store.transition(record.id, state, {"result": b"3"}) is None
        assert await other.transition(record.id, state, {"result": b"3"}) is None
    assert await other.get(record.id) == written


async def test_one_of_many_concurrent_final_transitions_wins(stores: Stores) -> None:
    workers = [await stores() for _ in range(50)]
    record = job()
    await workers[0].create(record)
    await workers[1].transition(record.id, JobState.STARTED)  # every worker must merge onto it

    async def finish(number: int, store: ResultStore) -> JobRecord | None:
        state = JobState.SUCCEEDED if number % 2 else JobState.FAILED
        return await store.transition(record.id, state, {"result": str(number).encode()})

    results = await asyncio.gather(*(finish(n, s) for n, s in enumerate(workers)))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1, winners
    assert await workers[-1].get(record.id) == winners[0]


# -- waiting -------------------------------------------------------------------------------


async def test_a_waiter_is_woken_by_the_final_transition(stores: Stores) -> None:
    waiter, worker = await stores(), await stores()
    record = job()
    await worker.create(record)
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await pending(waiting)
    await worker.transition(record.id, JobState.STARTED)
    await pending(waiting)  # not final: still waiting
    done = await worker.transition(record.id, JobState.SUCCEEDED, {"result": b"2"})
    assert await waiting == done


async def test_a_waiter_may_come_before_the_record(stores: Stores) -> None:
    waiter, worker = await stores(), await stores()
    record = job()
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await pending(waiting)
    await worker.create(record)
    done = await worker.transition(record.id, JobState.FAILED, {"error_type": "ValueError"})
    assert await waiting == done


async def test_a_record_created_final_wakes_its_waiter(stores: Stores) -> None:
    waiter, worker = await stores(), await stores()
    record = job(state=JobState.REVOKED)
    waiting = asyncio.create_task(waiter.wait(record.id, GUARD))
    await pending(waiting)
    await worker.create(record)
    assert await waiting == record


async def test_waiting_for_a_final_record_returns_it(store: ResultStore) -> None:
    record = job()
    await store.create(record)
    done = await store.transition(record.id, JobState.SUCCEEDED, {"result": b"[1]"})
    assert await store.wait(record.id, GUARD) == done


async def test_a_wait_times_out_with_none(store: ResultStore) -> None:
    record = job()
    await store.create(record)
    assert await store.wait(record.id, 0.3) is None
    assert await store.wait(f"nobody-{new_id()}", 0.3) is None
    assert (await store.get(record.id)) == record  # the timeout changed nothing


async def test_concurrent_waiters_are_all_woken_and_only_theirs(stores: Stores) -> None:
    waiters = [await stores() for _ in range(3)]
    worker = await stores()
    one, two = job(), job()
    await worker.create(one)
    await worker.create(two)
    # several waiters per connection, several connections
    on_one = [asyncio.create_task(waiters[n % 3].wait(one.id, GUARD)) for n in range(30)]
    on_two = [asyncio.create_task(waiters[n].wait(two.id, GUARD)) for n in range(3)]
    await pending(on_one[-1])
    assert not any(task.done() for task in on_one + on_two)
    done = await worker.transition(one.id, JobState.SUCCEEDED, {"result": b"1"})
    assert await asyncio.gather(*on_one) == [done] * 30
    assert not any(task.done() for task in on_two)
    finished = await worker.transition(two.id, JobState.SUCCEEDED, {"result": b"2"})
    assert await asyncio.gather(*on_two) == [finished] * 3


async def test_a_cancelled_waiter_leaves_the_others_waiting(stores: Stores) -> None:
    waiter, worker = await stores(), await stores()
    record = job()
    await worker.create(record)
    first = asyncio.create_task(waiter.wait(record.id, GUARD))
    second = asyncio.create_task(waiter.wait(record.id, GUARD))
    await pending(first)
    first.cancel()
    await pending(second)
    done = await worker.transition(record.id, JobState.SUCCEEDED)
    assert await second == done
    assert first.cancelled()


# -- joins (the chord counter) ---------------------------------------------------------------


async def test_joins_complete_exactly_once_and_stay_complete(stores: Stores) -> None:
    workers = [await stores() for _ in range(5)]
    group, members = f"group-{new_id()}", [f"m{n}" for n in range(20)]
    assert await workers[0].join(group, members[0], 20) is False
    assert await workers[1].join(group, members[0], 20) is False  # redelivered: counts once
    joins = [workers[n % 5].join(group, m, 20) for n, m in enumerate(members[1:])]
    answers = await asyncio.gather(*joins)
    assert answers.count(True) == 1, answers
    for n, member in enumerate(members):  # redelivered after completion: still complete
        assert await workers[n % 5].join(group, member, 20) is True
    assert await workers[2].join(group, "late", 20) is True
    assert await workers[3].join(f"group-{new_id()}", "m0", 20) is False  # groups are apart


async def test_concurrent_joins_of_the_same_last_member_all_see_completion(stores: Stores) -> None:
    workers = [await stores() for _ in range(4)]
    group = f"group-{new_id()}"
    assert await workers[0].join(group, "a", 2) is False
    answers = await asyncio.gather(*(w.join(group, "b", 2) for w in workers))
    assert answers == [True] * 4


# -- expiry ----------------------------------------------------------------------------------


async def until_gone(store: ResultStore, job_id: str) -> None:
    async with asyncio.timeout(GUARD):
        while await store.get(job_id) is not None:  # noqa: ASYNC110 - nothing to wake us
            await asyncio.sleep(0.1)


async def test_a_record_expires_ttl_after_its_last_write(store: ResultStore) -> None:
    short, kept = job(), job()
    await store.create(short, ttl=SHORT)
    await store.create(kept, ttl=SHORT)
    assert await store.transition(kept.id, JobState.STARTED, ttl=60) is not None
    await until_gone(store, short.id)
    assert await store.get(kept.id) is not None  # its last write said 60 s
    assert await store.transition(short.id, JobState.SUCCEEDED) is None
    assert await store.create(short, ttl=60) is True  # an expired id is free again
    assert await store.get(short.id) == short


async def test_an_expired_final_record_is_gone(store: ResultStore) -> None:
    record = job()
    await store.create(record, ttl=60)
    await store.transition(record.id, JobState.SUCCEEDED, {"result": b"1"}, ttl=SHORT)
    await until_gone(store, record.id)
    assert await store.wait(record.id, 0.2) is None
    assert record.id not in {r.id for r in await store.jobs()}


async def test_a_join_set_expires_ttl_after_its_last_write(store: ResultStore) -> None:
    group = f"group-{new_id()}"
    assert await store.join(group, "a", 2, ttl=SHORT) is False
    await asyncio.sleep(SHORT + 1.0)  # the rule: gone SHORT s after the last write
    assert await store.join(group, "b", 2, ttl=60) is False  # "a" was forgotten
    assert await store.join(group, "a", 2, ttl=60) is True


# -- listing ---------------------------------------------------------------------------------


async def test_jobs_lists_newest_first_by_queue_and_state(store: ResultStore) -> None:
    base = time.time()
    made = []
    for n in range(12):
        record = JobRecord(id=f"job-{new_id()}", queue=f"q{n % 2}", created_at=base + n)
        await store.create(record)
        made.append(record)
    for record in made[::3]:
        await store.transition(record.id, JobState.SUCCEEDED, {"result": b"1"})
    now = {r.id: await store.get(r.id) for r in made}
    newest = [now[r.id] for r in reversed(made)]
    assert await store.jobs() == newest
    assert await store.jobs(limit=5) == newest[:5]
    assert await store.jobs(queue="q1") == [r for r in newest if r and r.queue == "q1"]
    succeeded = [r for r in newest if r and r.state == JobState.SUCCEEDED]
    assert await store.jobs(state=JobState.SUCCEEDED) == succeeded
    assert (
        await store.jobs(queue="q0", state=JobState.PENDING, limit=2)
        == [r for r in newest if r and r.queue == "q0" and r.state == JobState.PENDING][:2]
    )
    assert await store.jobs(queue="nowhere") == []


# -- the stored layout -------------------------------------------------------------------------

texts = st.text(max_size=30)
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
records = st.builds(
    JobRecord,
    id=texts,
    queue=texts,
    state=st.sampled_from(list(JobState)),
    result=st.none() | st.binary(max_size=200),
    error_type=st.none() | texts,
    error_message=st.none() | texts,
    progress=st.none() | st.binary(max_size=50),
    attempt=st.integers(min_value=0, max_value=2**53),
    created_at=floats.filter(math.isfinite),
    started_at=st.none() | floats,
    finished_at=st.none() | floats,
    members=st.lists(texts, max_size=5).map(tuple),
    meta=st.dictionaries(texts, texts, max_size=5),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(record=records)
async def test_every_field_survives_the_store(store: ResultStore, record: JobRecord) -> None:
    assert decode_record(encode_record(record)) == record
    # hypothesis seeds `random` (new_id's source) per example: uuid4 reads the OS
    record = msgspec.structs.replace(record, id=f"{uuid.uuid4().hex}{record.id}")
    assert await store.create(record) is True
    assert await store.get(record.id) == record
    if not record.state.final:
        changed = await store.transition(record.id, JobState.SUCCEEDED, {"meta": record.meta})
        assert await store.get(record.id) == changed

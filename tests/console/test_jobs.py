"""The Jobs panel's data: a result store's recent job records (Redis and NATS), in the API
and in the event stream; no store, no jobs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from microhive.console import console_app
from microhive.envelope import new_id
from microhive.tasks.store import JobRecord, JobState
from microhive.tasks.stores.engines import open_engine_store
from tests import engines
from tests.console.server import events, serving
from tests.contract.result_stores import cleanup

TOKEN = "jobs-test-token"
BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["redis", "nats"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "redis":
        engines.require_redis()
        made = engines.with_query(engines.REDIS_URL, prefix=f"mhconsole-jobs-{new_id()[:8]}:")
    else:
        engines.require_nats()
        made = engines.with_query(engines.NATS_URL, prefix=f"mhcjobs_{new_id()[:8]}")
    yield made
    await cleanup(made)
    if request.param == "nats":
        await engines.delete_nats_prefix(made, made.partition("prefix=")[2])


async def test_jobs_in_the_api_and_the_stream(url: str) -> None:
    store = open_engine_store(url)
    now = time.time()
    try:
        done = JobRecord(id="job-done", queue="add", created_at=now - 3, started_at=now - 2,
                         finished_at=now - 1, result=b"2")  # fmt: skip
        await store.create(done)
        await store.transition("job-done", JobState.SUCCEEDED, {"result": b"2"})
        await store.create(JobRecord(id="job-bad", queue="add", created_at=now - 2))
        await store.transition(
            "job-bad", JobState.FAILED, {"error_type": "ZeroDivisionError", "error_message": "1/0"}
        )
        await store.create(JobRecord(id="job-new", queue="mul", created_at=now - 1))
        app = console_app(transport=url, results=url, token=TOKEN, every=0.2)
        async with serving(app) as client:
            listed = (await client.get("/api/jobs", headers=BEARER)).json()["jobs"]
            by_id = {job["id"]: job for job in listed}
            assert set(by_id) == {"job-done", "job-bad", "job-new"}
            assert by_id["job-done"]["state"] == "succeeded" and by_id["job-done"]["result"] == 2
            assert by_id["job-bad"]["error"] == "ZeroDivisionError: 1/0"
            assert by_id["job-new"]["state"] == "pending"
            failed = await client.get("/api/jobs", params={"state": "failed"}, headers=BEARER)
            assert [job["id"] for job in failed.json()["jobs"]] == ["job-bad"]
            of_mul = await client.get("/api/jobs", params={"queue": "mul"}, headers=BEARER)
            assert [job["id"] for job in of_mul.json()["jobs"]] == ["job-new"]
            bad = await client.get("/api/jobs", params={"state": "lost"}, headers=BEARER)
            assert bad.status_code == 400
            assert (await client.get("/api/jobs")).status_code == 401
            seen = await events(client, 3, **BEARER)
            ticks = [data for name, data in seen if name == "tick" and "jobs" in data]
            assert ticks, seen
            assert ticks[-1]["jobs"]["counts"] == {"succeeded": 1, "failed": 1, "pending": 1}
    finally:
        await store.close()


async def test_without_a_store_there_are_no_jobs() -> None:
    engines.require_redis()
    app = console_app(broker=engines.REDIS_URL, token=TOKEN)
    async with serving(app) as client:
        answer = await client.get("/api/jobs", headers=BEARER)
        assert answer.status_code == 404 and "--results" in answer.json()["error"]
        assert (await client.get("/api/overview", headers=BEARER)).json()["jobs"] is None


async def test_on_memory_the_hive_s_own_store_is_read() -> None:
    app = console_app(transport=f"memory://jobs-{new_id()[:8]}", token=TOKEN)
    async with serving(app) as client:
        answer = await client.get("/api/jobs", headers=BEARER)
        assert answer.status_code == 200 and answer.json()["jobs"] == []

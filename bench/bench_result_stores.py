#!/usr/bin/env python
"""Result stores (memory, Redis, NATS) against raw redis-py doing the same work, same run.

Two measures per store:

- **round trips/s**: one job = ``create`` (by the caller), ``transition`` to succeeded with a
  result (by a worker: another store, another connection), ``wait`` by the caller (final by
  then: one read). 64 jobs in flight.
- **wake-up latency**: a caller already waits for the job; the worker's final ``transition``
  is timed from just before its call until the waiter returns. One job at a time; p50/p99.

The raw baseline is redis-py alone, with no rules kept: ``SET PX`` for the create,
``SET PX`` + ``PUBLISH`` in one pipeline for the final write, ``GET`` for the read; for the
wake-up a pub/sub subscription made before the clock starts. Ratio = store / raw (higher is
better for round trips, lower for latency).

    .venv/bin/python bench/bench_result_stores.py                  # 5,000 jobs, best of 3
    .venv/bin/python bench/bench_result_stores.py --jobs 2000 --stores redis,nats --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: import the package beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from microhive.tasks.store import JobRecord, JobState, ResultStore, encode_record
from microhive.tasks.stores.engines import open_engine_store
from microhive.tasks.stores.memory import MemoryStore

IN_FLIGHT = 64
SETTLE = 0.02  # seconds given to a waiter to be in place before the write it waits for
RESULT = b'{"sum": 12345, "items": [1, 2, 3]}'
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"

Job = Callable[[int], Awaitable[None]]


async def in_flight(jobs: int, job: Job) -> float:
    """Jobs per second with ``IN_FLIGHT`` running at once."""
    started = time.perf_counter()

    async def lane(first: int) -> None:
        for n in range(first, jobs, IN_FLIGHT):
            await job(n)

    await asyncio.gather(*(lane(k) for k in range(IN_FLIGHT)))
    return jobs / (time.perf_counter() - started)


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000  # ms


# -- the stores ------------------------------------------------------------------------------


async def store_round_trips(caller: ResultStore, worker: ResultStore, jobs: int) -> float:
    run = uuid.uuid4().hex[:8]

    async def job(n: int) -> None:
        record = JobRecord(id=f"{run}-{n}", queue="bench", created_at=time.time())
        await caller.create(record, ttl=300)
        await worker.transition(record.id, JobState.SUCCEEDED, {"result": RESULT}, ttl=300)
        assert await caller.wait(record.id, 30) is not None

    return await in_flight(jobs, job)


async def store_wake_ups(caller: ResultStore, worker: ResultStore, jobs: int) -> list[float]:
    run, samples = uuid.uuid4().hex[:8], []
    for n in range(jobs):
        record = JobRecord(id=f"{run}-w{n}", queue="bench", created_at=time.time())
        await caller.create(record, ttl=300)
        waiting = asyncio.ensure_future(caller.wait(record.id, 30))
        await asyncio.sleep(SETTLE)  # the waiter subscribes (not timed)
        started = time.perf_counter()
        await worker.transition(record.id, JobState.SUCCEEDED, {"result": RESULT}, ttl=300)
        assert await waiting is not None
        samples.append(time.perf_counter() - started)
    return samples


# -- raw redis-py ------------------------------------------------------------------------------


async def raw_round_trips(client: Any, jobs: int) -> float:
    run, value = uuid.uuid4().hex[:8], encode_record(JobRecord(id="x", queue="bench"))

    async def job(n: int) -> None:
        key = f"bench-raw:{run}:{n}"
        await client.set(key, value, px=300_000)
        async with client.pipeline(transaction=False) as pipe:
            pipe.set(key, RESULT, px=300_000).publish(key, RESULT)
            await pipe.execute()
        assert await client.get(key) is not None

    return await in_flight(jobs, job)


async def raw_wake_ups(client: Any, jobs: int) -> list[float]:
    run, samples = uuid.uuid4().hex[:8], []
    pubsub = client.pubsub()
    try:
        for n in range(jobs):
            key = f"bench-raw:{run}:w{n}"
            await pubsub.subscribe(key)
            while (await pubsub.get_message(timeout=1))["type"] != "subscribe":
                pass
            started = time.perf_counter()
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, RESULT, px=300_000).publish(key, RESULT)
                await pipe.execute()
            while True:
                message = await pubsub.get_message(timeout=30)
                if message is not None and message["type"] == "message":
                    break
            samples.append(time.perf_counter() - started)
            await pubsub.unsubscribe(key)
            await pubsub.get_message(timeout=1)
    finally:
        await pubsub.aclose()
    return samples


# -- the run ---------------------------------------------------------------------------------


async def measure(name: str, jobs: int, wakes: int, repeat: int) -> dict[str, float]:
    if name == "raw":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL, max_connections=IN_FLIGHT + 4)
        try:
            rate = max([await raw_round_trips(client, jobs) for _ in range(repeat)])
            p50, p99 = percentiles(await raw_wake_ups(client, wakes))
        finally:
            await client.aclose()
    else:
        caller: ResultStore
        worker: ResultStore
        if name == "memory":
            caller = worker = MemoryStore()
        else:
            url = {"redis": REDIS_URL, "nats": NATS_URL}[name] + "?prefix=benchstore"
            if name == "redis":
                url = url.replace("benchstore", "benchstore:")
            caller, worker = open_engine_store(url), open_engine_store(url)
        try:
            rate = max([await store_round_trips(caller, worker, jobs) for _ in range(repeat)])
            p50, p99 = percentiles(await store_wake_ups(caller, worker, wakes))
        finally:
            await caller.close()
            await worker.close()
    return {"round_trips_per_s": rate, "wake_p50_ms": p50, "wake_p99_ms": p99}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--wakes", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stores", default="memory,redis,nats")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {"raw": await measure("raw", args.jobs, args.wakes, args.repeat)}
    for name in args.stores.split(","):
        results[name] = await measure(name, args.jobs, args.wakes, args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    raw = results["raw"]
    print(f"{'store':8} {'round trips/s':>14} {'ratio':>6} {'wake p50 ms':>12} {'ratio':>6} "
          f"{'wake p99 ms':>12} {'ratio':>6}")  # fmt: skip
    for name, row in results.items():
        print(
            f"{name:8} {row['round_trips_per_s']:14,.0f} "
            f"{row['round_trips_per_s'] / raw['round_trips_per_s']:6.2f} "
            f"{row['wake_p50_ms']:12.3f} {row['wake_p50_ms'] / raw['wake_p50_ms']:6.2f} "
            f"{row['wake_p99_ms']:12.3f} {row['wake_p99_ms'] / raw['wake_p99_ms']:6.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())

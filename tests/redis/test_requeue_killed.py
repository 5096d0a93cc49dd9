"""A requeue of many dead letters SIGKILLed half-way loses none: each batch is published and
removed in one Lua step, so every letter is in the target or still dead (never neither)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter

import pytest

from microhive import QueueBroker

from .. import engines
from ..cli.helpers import Process
from ..processes import ready, until

pytestmark = pytest.mark.slow

LETTERS = 60_000


async def test_a_requeue_killed_half_way_loses_nothing(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(engines.REDIS_URL)
    dead, target = f"{prefix}queue:jobs:dead", f"{prefix}queue:done"
    try:
        async with client.pipeline(transaction=False) as pipe:
            for n in range(LETTERS):
                data = json.dumps({"v": 1, "kind": "message", "name": "jobs", "payload": {"n": n}})
                pipe.xadd(
                    dead, {"data": data, "reason": "boom", "attempt": 1, "dead_at": time.time()}
                )
            await pipe.execute()

        process = Process("-m", "tests.redis.requeuer", redis_url)
        try:
            await ready(process, "requeuing")
            await until(lambda: client.xlen(target), 30, "the first requeued batch")
            process.popen.send_signal(signal.SIGKILL)
            assert process.wait(timeout=20) == -signal.SIGKILL
        finally:
            if process.popen.poll() is None:
                process.popen.kill()
        assert "requeued" not in process.output, "killed before it finished"

        moved, left = await _numbers(client, target), await _numbers(client, dead)
        assert moved and left, "killed half-way: some moved, some still dead"
        assert set(moved) | set(left) == set(range(LETTERS)), "none lost"
        duplicates = sum(moved.values()) + sum(left.values()) - LETTERS
        print(f"killed with {len(moved)} of {LETTERS} moved, {duplicates} duplicated")
        assert duplicates == 0, "a batch is atomic: a SIGKILL duplicates none"

        async with QueueBroker.from_url(redis_url) as broker:  # finishing the job
            assert await broker.requeue("jobs", to="done") == len(left)
            assert await broker.queue("jobs").dead.list() == []
        final = await _numbers(client, target)
        assert set(final) == set(range(LETTERS)) and set(final.values()) == {1}
    finally:
        await client.aclose()


async def _numbers(client: object, stream: str) -> Counter[int]:
    """The ``n`` of every message in ``stream`` (envelopes in ``data``)."""
    found: Counter[int] = Counter()
    start = "-"
    while True:
        page = await client.xrange(stream, start, "+", count=5000)  # type: ignore[attr-defined]
        for _, fields in page:
            found[json.loads(fields[b"data"])["payload"]["n"]] += 1
        if len(page) < 5000:
            return found
        start = "(" + page[-1][0].decode()
        await asyncio.sleep(0)

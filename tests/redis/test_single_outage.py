"""A single-runner schedule through an engine outage: the keeper keeps trying (and says so),
ticks pass unrun while nobody can hold the lease, and they run again once Redis is back."""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import pytest

from microhive import QueueBroker

from .. import engines
from ..processes import until
from ..single_agents import Ticker


async def test_schedule_survives_a_dead_engine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "microhive")
    server = engines.RedisServer(tmp_path / "redis")
    server.start()
    try:
        broker = QueueBroker.from_url(server.url)
        agent = Ticker(broker=broker)

        def ticks() -> list[int]:
            return list(agent.__dict__.get("ticks", []))

        async with broker, agent:
            await until(lambda: len(ticks()) >= 2, 30, "ticks with Redis up")
            server.kill()
            await until(lambda: "could not renew it" in caplog.text, 30, "the failure logged")
            await until(lambda: "no longer running" in caplog.text, 30, "the holder to stop")
            await asyncio.sleep(1.0)  # ticks pass with the engine down
            stalled = len(ticks())
            await asyncio.sleep(1.0)
            assert len(ticks()) == stalled, "ticks ran without a lease"
            server.start()
            await until(lambda: len(ticks()) >= stalled + 2, 60, "ticks after Redis is back")
        assert len(set(ticks())) == len(ticks()), "a tick ran twice"
    finally:
        server.stop()


async def test_a_holder_whose_lease_is_taken_stops_running_ticks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another holder takes the lease behind the holder's back (as after a partition that
    outlasted the TTL): the old holder notices at its next renewal, says so, and runs no
    more ticks; its claims are refused meanwhile."""
    import redis.asyncio as aioredis

    engines.require_redis()
    caplog.set_level(logging.INFO, "microhive")
    prefix = f"microhive-test.{secrets.token_hex(5)}:"
    url = engines.with_query(engines.REDIS_URL, prefix=prefix)
    client = aioredis.Redis.from_url(engines.REDIS_URL)
    broker = QueueBroker.from_url(url)
    agent = Ticker(broker=broker)
    try:
        async with broker, agent:
            await until(lambda: len(agent.__dict__.get("ticks", [])) >= 2, 30, "ticks")
            await client.set(f"{prefix}lease:Ticker.tick", "another replica", px=60_000)
            taken = len(agent.__dict__.get("ticks", []))
            await until(lambda: "lost to another replica" in caplog.text, 30, "the loss logged")
            settled = len(agent.__dict__.get("ticks", []))
            assert settled <= taken + 1, "a tick may have been claimed before the key changed"
            await asyncio.sleep(1.5)  # three periods
            assert len(agent.__dict__.get("ticks", [])) == settled, "ran ticks without the lease"
    finally:
        await client.delete(f"{prefix}lease:Ticker.tick", f"{prefix}lease:Ticker.tick:tick")
        await client.aclose()

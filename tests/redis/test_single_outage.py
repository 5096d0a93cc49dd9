"""A single-runner schedule through an engine outage: the keeper keeps trying (and says so),
ticks pass unrun while nobody can hold the lease, and they run again once Redis is back."""

from __future__ import annotations

import asyncio
import logging
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

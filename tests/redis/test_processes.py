"""Fault tests with real processes: SIGKILLed consumers, a Redis restart, the supervisor
(the scenarios are tests/processes.py's, shared by every engine)."""

from __future__ import annotations

import os
import re
import signal

import pytest

from microhive import QueueBroker

from .. import engines
from ..fault_agents import JOBS
from ..processes import (
    RECORDER,
    Records,
    a_consumer_killed_mid_run,
    a_producer_that_stops_and_comes_back,
    a_server_restarted_mid_run,
    ready,
    run_recorder,
    stop,
    until,
)
from ..scenarios import REDIS, Server

pytestmark = pytest.mark.slow


async def test_sigkill_of_a_consumer_process_mid_run_loses_nothing(
    redis_url: str, records: Records
) -> None:
    survivor = await a_consumer_killed_mid_run(
        redis_url,
        records,
        kill_when=lambda records, _: len(records.processed()) >= 3_000,
        # only what the killed process held (prefetch 8) and the acks it had not sent yet
        max_duplicates=16,
    )
    assert "reclaimed" in survivor.output


async def test_a_producer_that_stops_and_comes_back_is_picked_up(
    redis_url: str, records: Records
) -> None:
    """Blocking reads time out with nothing to deliver and are made again meanwhile."""
    url = engines.with_query(redis_url, block=0.2)
    await a_producer_that_stops_and_comes_back(url, records, quiet=1.0)


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "sigterm"])
async def test_server_restart_mid_run_loses_nothing_acknowledged(
    private_redis: Server, records: Records, prefix: str, crash: bool
) -> None:
    await a_server_restarted_mid_run(
        REDIS.on(private_redis, prefix=prefix),
        private_redis,
        records,
        crash=crash,
        # a send in flight when the server went may be stored twice, and a message held by
        # the consumer processed again: a handful (acks are fsynced before the reply)
        max_duplicates=16,
        recovered=REDIS.recovered,
    )


async def test_supervisor_restarts_a_killed_agent_process(redis_url: str, records: Records) -> None:
    supervisor = run_recorder(redis_url, records, "--processes", "--log-level", "INFO")
    try:
        line = await ready(supervisor, rf"started {RECORDER} \(pid \d+\)")
        pid = int(re.findall(r"pid (\d+)", line)[0])
        await ready(supervisor)
        os.kill(pid, signal.SIGKILL)
        await ready(supervisor, r"exited with -9; restarting")

        def restarted() -> int | None:
            found = re.findall(rf"started {RECORDER} \(pid (\d+)\)", supervisor.output)
            return int(found[-1]) if len(found) > 1 else None

        new_pid = await until(restarted, 20, "a new child")
        assert new_pid != pid
        async with QueueBroker.from_url(redis_url, queues=[JOBS]) as broker:
            await broker.jobs.send({"n": 42})
            await until(lambda: 42 in records.by_pid(new_pid), 20, "the new child to consume")
        assert stop(supervisor) == 0, supervisor.output
    finally:
        supervisor.kill()
    assert f"{RECORDER} stopped (exit 0)" in supervisor.output

"""Fault tests with real processes: a consumer SIGKILLed mid-run, a producer that goes and
comes back. The recorders' bus is memory:// (Kafka carries no signals; these tests are
about the queue)."""

from __future__ import annotations

import pytest

from ..processes import (
    Records,
    a_consumer_killed_mid_run,
    a_producer_that_stops_and_comes_back,
)

pytestmark = pytest.mark.slow


async def test_sigkill_of_a_consumer_process_mid_run_loses_nothing(
    kafka_url: str, records: Records
) -> None:
    await a_consumer_killed_mid_run(
        kafka_url,
        records,
        kill_when=lambda records, pid: len(records.by_pid(pid)) >= 1_000,
        # what the killed process processed after its last commit (commit_interval 0.5 s
        # while busy, at under 2,000 messages/s) plus what it held
        max_duplicates=2_500,
        pause=0.004,
        empty_within=20,
        bus="memory://",
    )


async def test_a_producer_that_stops_and_comes_back_is_picked_up(
    kafka_url: str, records: Records
) -> None:
    """Idle meanwhile, fetches come back empty and heartbeats go on."""
    await a_producer_that_stops_and_comes_back(kafka_url, records, quiet=3.0, bus="memory://")

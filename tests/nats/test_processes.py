"""Fault tests with real processes: a SIGKILLed consumer, a producer that goes and comes
back, a NATS server restarted under load."""

from __future__ import annotations

import pytest

from .. import engines
from ..processes import (
    Records,
    a_consumer_killed_mid_run,
    a_producer_that_stops_and_comes_back,
    a_server_restarted_mid_run,
)
from ..scenarios import NATS, Server

pytestmark = pytest.mark.slow


async def test_sigkill_of_a_consumer_process_mid_run_loses_nothing(
    nats_url: str, records: Records
) -> None:
    await a_consumer_killed_mid_run(
        nats_url,
        records,
        kill_when=lambda records, _: len(records.processed()) >= 3_000,
        # only what the killed process held (prefetch 8) and the acks it had not sent yet
        max_duplicates=16,
    )


async def test_a_producer_that_stops_and_comes_back_is_picked_up(
    nats_url: str, records: Records
) -> None:
    """Pull requests expire with nothing to deliver and are renewed meanwhile."""
    url = engines.with_query(nats_url, expires=0.5)
    await a_producer_that_stops_and_comes_back(url, records, quiet=2.0)


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "sigterm"])
async def test_server_restart_mid_run_loses_nothing_acknowledged(
    private_nats: Server, records: Records, prefix: str, crash: bool
) -> None:
    await a_server_restarted_mid_run(
        engines.with_query(private_nats.url, prefix=prefix, ack_wait=2, reconnect_wait=0.5),
        private_nats,
        records,
        crash=crash,
        # A send in flight when the server went may be stored twice, and a message held by
        # the consumer processed again: a handful. A SIGKILLed nats-server also forgets the
        # newest acknowledgements (it writes consumer state lazily): what it had been told
        # in its last moments comes again (at least once, never lost).
        max_duplicates=400 if crash else 8,
        recovered=NATS.recovered,
    )

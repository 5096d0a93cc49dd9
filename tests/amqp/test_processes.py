"""Fault tests with real processes (tests/processes.py's scenarios): a producer that goes
and comes back on the shared RabbitMQ, a private node restarted under load (more SIGKILL and
node-crash tests, with tests/amqp/worker.py, are in test_faults.py)."""

from __future__ import annotations

import pytest

from microhive.envelope import new_id

from ..processes import (
    Records,
    a_producer_that_stops_and_comes_back,
    a_server_restarted_mid_run,
)
from ..scenarios import AMQP, Server
from . import server

pytestmark = pytest.mark.slow


async def test_a_producer_that_stops_and_comes_back_is_picked_up(records: Records) -> None:
    """The consumer keeps its channel and its basic.consume while no producer runs."""
    server.require_amqp()
    url = server.contract_url(f"producer{new_id()[:6]}")
    await a_producer_that_stops_and_comes_back(url, records, quiet=1.0)


@pytest.mark.parametrize("crash", [True, False], ids=["sigkill", "sigterm"])
async def test_node_restart_mid_run_loses_nothing_acknowledged(
    private_rabbit: Server, records: Records, crash: bool
) -> None:
    await a_server_restarted_mid_run(
        AMQP.on(private_rabbit),
        private_rabbit,
        records,
        crash=crash,
        # what the consumer held and the sends in flight come again; a SIGKILLed node may
        # also forget the newest acks it had been sent (at least once, never lost)
        max_duplicates=400 if crash else 16,
        recovered=AMQP.recovered,
    )

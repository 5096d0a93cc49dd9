"""A producer that goes and comes back, with real processes on the shared RabbitMQ (the
SIGKILL and node-crash tests are in test_faults.py, on a private node)."""

from __future__ import annotations

import pytest

from microhive.envelope import new_id

from ..processes import (
    Records,
    a_producer_that_stops_and_comes_back,
)
from . import server

pytestmark = pytest.mark.slow


async def test_a_producer_that_stops_and_comes_back_is_picked_up(records: Records) -> None:
    """The consumer keeps its channel and its basic.consume while no producer runs."""
    server.require_amqp()
    url = server.contract_url(f"producer{new_id()[:6]}")
    await a_producer_that_stops_and_comes_back(url, records, quiet=1.0)

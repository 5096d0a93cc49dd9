"""An agent with a single-runner schedule that the lease tests run as several processes.

``microhive run tests.single_agents:Ticker --transport redis://...`` runs ``tick`` every
``$MH_TEST_PERIOD`` seconds (``single=True``, lease TTL ``$MH_TEST_LEASE_TTL``); each run
appends its tick number to ``$MH_TEST_RECORD.<pid>`` before it returns.
"""

from __future__ import annotations

import os
import time

from microhive import MicroAgent, periodic

from .fault_agents import record

PERIOD = float(os.environ.get("MH_TEST_PERIOD", "0.5"))
TTL = float(os.environ.get("MH_TEST_LEASE_TTL", "1.5"))


def tick_now(period: float = PERIOD) -> int:
    """The tick that is due now: runs start just after their due time ``tick * period``
    (a hair before is possible too: the event loop's timers may fire up to 1 ms early)."""
    return round(time.time() / period)


class Ticker(MicroAgent):
    ticks: list[int]

    @periodic(PERIOD, single=True, lease_ttl=TTL, timeout=10)
    async def tick(self) -> None:
        tick = tick_now()
        record(str(tick))
        self.__dict__.setdefault("ticks", []).append(tick)

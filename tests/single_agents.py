"""An agent with a single-runner schedule that the lease tests run as several processes.

``microhive run tests.single_agents:Ticker --transport redis://...`` runs ``tick`` every
``$MH_TEST_PERIOD`` seconds (``single=True``, lease TTL ``$MH_TEST_LEASE_TTL``); each run
appends its tick number to ``$MH_TEST_RECORD.<pid>`` before it returns.

The tick number is the one the schedule claimed on the engine just before it called the job
(its debug record ``lease ...: tick N claimed`` carries it), not one guessed from the clock:
on a busy machine a run may start late enough to look like the next tick.
"""

from __future__ import annotations

import logging
import os
import time

from microhive import MicroAgent, periodic

from .fault_agents import record

PERIOD = float(os.environ.get("MH_TEST_PERIOD", "0.5"))
TTL = float(os.environ.get("MH_TEST_LEASE_TTL", "1.5"))


class Claimed(logging.Handler):
    """Keeps the tick of the last ``tick N claimed`` record of the loggers it is added to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tick: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        tick = getattr(record, "tick", None)
        if isinstance(tick, int):
            self.tick = tick


CLAIMED = Claimed()
_logger = logging.getLogger("microhive.agent.Ticker")
_logger.setLevel(logging.DEBUG)
_logger.addHandler(CLAIMED)


def tick_now(period: float = PERIOD) -> int:
    """The tick whose due time (``tick * period``) is nearest to now."""
    return round(time.time() / period)


class Ticker(MicroAgent):
    ticks: list[int]

    @periodic(PERIOD, single=True, lease_ttl=TTL, timeout=10)
    async def tick(self) -> None:
        tick = CLAIMED.tick
        assert tick is not None, "ran without a claim"
        record(str(tick))
        self.__dict__.setdefault("ticks", []).append(tick)

"""Scheduled jobs that misbehave never end their schedule.

Whatever a run raises (``CancelledError`` of its own, a custom ``BaseException``,
``sys.exit()``, ``KeyboardInterrupt``) or however it overruns its timeout, later runs
still happen: the test counts runs after the failures, never how fast they came.
"""

from __future__ import annotations

import asyncio
import sys

from microhive import HandlerAborted, HandlerTimeout, MicroAgent, on, periodic

from .helpers import eventually

PLAN = ["cancel", "base", "exit", "interrupt", "hang", "swallow", "raise"]


class Boom(BaseException):
    pass


class Job(MicroAgent):
    @periodic(period=0.01, timeout=0.1)
    async def tick(self) -> None:
        runs = self.settings["runs"]
        runs.append(len(runs))
        how = PLAN[len(runs) - 1] if len(runs) <= len(PLAN) else "ok"
        if how == "cancel":
            task = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
            task.cancel()
            await task
        elif how == "base":
            raise Boom("boom")
        elif how == "exit":
            sys.exit(2)
        elif how == "interrupt":
            raise KeyboardInterrupt
        elif how == "hang":
            await asyncio.sleep(3600)
        elif how == "swallow":
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                await asyncio.sleep(0.01)
        elif how == "raise":
            raise ValueError("plain")

    @on("error_tick")
    def failed(self, exc: BaseException) -> None:
        self.settings["errors"].append(exc)


async def test_a_schedule_outlives_every_kind_of_failure() -> None:
    agent = Job(settings={"runs": [], "errors": []})
    async with agent:
        await eventually(lambda: len(agent.settings["runs"]) >= len(PLAN) + 3, 30)
    errors = agent.settings["errors"]
    assert [type(e) for e in errors] == [
        HandlerAborted,
        HandlerAborted,
        HandlerAborted,
        HandlerAborted,
        HandlerTimeout,
        HandlerTimeout,
        ValueError,
    ]
    originals = [type(e.original) for e in errors if isinstance(e, HandlerAborted)]
    assert originals == [asyncio.CancelledError, Boom, SystemExit, KeyboardInterrupt]
    assert "ignored its cancellation" in str(errors[5])


async def test_stopping_still_cancels_a_running_job() -> None:
    """Only the agent's own shutdown cancels a job: a hanging run ends with stop()."""

    class Hang(MicroAgent):
        @periodic(period=10)
        async def tick(self) -> None:
            self.settings["started"].set()
            await asyncio.sleep(3600)

    agent = Hang(settings={"started": asyncio.Event()}, grace_period=0.05)
    await agent.start()
    await agent.settings["started"].wait()
    await agent.stop()
    assert not agent.running

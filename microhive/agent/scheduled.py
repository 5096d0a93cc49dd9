"""One run of a scheduled (periodic or cron) handler, as its loop calls it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..errors import HandlerAborted
from ..logs import log_context
from ..middleware import Handling
from .dispatch import cancelled_from_outside, describe, failure, run_with_timeout
from .handlers import Handler
from .specs import CronSpec, PeriodicSpec
from .watched import observed

if TYPE_CHECKING:
    from .agent import MicroAgent


def job_runner(agent: MicroAgent, handler: Handler) -> Callable[[], Awaitable[None]]:
    """The run of a periodic or cron handler its loop calls: one failing run is logged and
    handed to the error hooks, never ends the schedule; a stop lets a running one finish."""
    spec = handler.spec
    assert isinstance(spec, PeriodicSpec | CronSpec)

    async def job() -> None:
        with log_context(handler=handler.name):
            counting = agent._counting("schedule", handler.name, handler.name)
            if agent._hooks.watching or counting:
                event = Handling("schedule", agent.name, handler.name, handler.name)
                await observed(agent, event, attempt(event), counting)
            else:
                await attempt()

    async def attempt(event: Handling | None = None) -> str:
        try:
            await run_with_timeout(handler, spec.timeout, handler.function(agent))
        except BaseException as caught:  # no failure of one run may end the schedule
            if cancelled_from_outside(caught):
                raise
            exc = failure(caught)
            if event is not None:
                event.error = exc
            agent.log.error(
                "scheduled run failed: %s",
                describe(exc),
                exc_info=not isinstance(exc, TimeoutError | HandlerAborted),
            )
            await agent._error_hooks(handler, exc, None)
            return "failed"
        return "ok"

    async def run() -> None:
        # shielded: stopping the schedule lets a running job finish within the grace period
        await asyncio.shield(agent._spawn(job()))

    return run

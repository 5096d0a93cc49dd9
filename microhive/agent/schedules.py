"""Periodic and cron loops. A run never overlaps the previous one: late runs are skipped.

Fixed rate: the n-th run is due at ``start + n * period``; when a run overruns, the due
times it covered are skipped (logged), never queued up. Cron likewise computes the next fire
time after the later of "now" and the previous fire time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

from .specs import CronSpec, PeriodicSpec

RunJob = Callable[[], Awaitable[None]]


async def periodic_loop(
    spec: PeriodicSpec,
    run: RunJob,
    log: logging.LoggerAdapter,  # type: ignore[type-arg]
    skipped: Callable[[int], None] | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    if spec.start_after:
        await asyncio.sleep(spec.start_after)
    due = loop.time()
    while True:
        wait = due - loop.time() + (random.uniform(0, spec.jitter) if spec.jitter else 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        await run()
        due += spec.period
        late = loop.time() - due
        if late > 0:
            missed = math.ceil(late / spec.period)
            due += missed * spec.period
            log.warning("run took too long: skipped %d periodic run(s)", missed)
            if skipped is not None:
                skipped(missed)


async def cron_fires(spec: CronSpec, log: logging.LoggerAdapter) -> AsyncIterator[datetime]:  # type: ignore[type-arg]
    """Each fire time, when it has come; the next is computed once the consumer of the
    previous one is done, so fire times that passed meanwhile are skipped."""
    last = datetime.now(UTC)
    while True:
        now = datetime.now(UTC)
        try:
            fire = spec.next_after(max(now, last))
        except Exception as exc:  # validated at declaration; a loop that dies must say so
            log.error("cron %r has no next fire time, schedule ended: %s", spec.expression, exc)
            return
        wait = (fire - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        last = fire
        yield fire


async def cron_loop(spec: CronSpec, run: RunJob, log: logging.LoggerAdapter) -> None:  # type: ignore[type-arg]
    async for _ in cron_fires(spec, log):
        await run()

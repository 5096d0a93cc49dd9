"""Schedules that run once across replicas (``single=True``): a lease and a claim per tick.

Every replica keeps the same wall-clock ticks — periodic tick *n* is due at ``n * period``
seconds after the Unix epoch, a cron tick is its fire time — so replicas agree on what
"tick n" is without talking to each other. A :class:`LeaseKeeper` takes and renews the
job's lease in the background; at each tick the replica that holds it claims the tick on
the engine and runs the job only when the claim succeeds.

Nothing here ends the schedule: an engine that is down or answers late makes the keeper
retry with capped backoff (logged), and ticks pass unrun until the lease is held again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import ConfigurationError
from ..leases import Lease, open_lease
from ..retry import Backoff
from .dispatch import describe
from .schedules import cron_fires
from .specs import CronSpec, PeriodicSpec

RunJob = Callable[[], Awaitable[None]]
if TYPE_CHECKING:
    Log: TypeAlias = logging.LoggerAdapter[Any]

RETRY = Backoff(initial=0.2, factor=2.0, maximum=5.0, jitter=0.2)
"""Pause before the next attempt when the engine did not answer a lease operation."""

VALIDITY = 0.8
"""The share of ``ttl`` after a renewal started for which the holder runs ticks without
hearing from the engine again: its lease on the engine lasts at least ``ttl`` from then."""


def is_single(spec: object) -> bool:
    return isinstance(spec, PeriodicSpec | CronSpec) and spec.single


def lease_source(agent: str, schedules: Sequence[Any], broker: Any, bus: Any) -> Any:
    """Where ``agent``'s single-runner schedules take their leases: the broker, else the bus."""
    singles = [h.name for h in schedules if is_single(h.spec)]
    if not singles:
        return None
    source = broker if broker is not None else bus
    if source is None:
        raise ConfigurationError(
            f"{agent}: single=True schedules ({', '.join(singles)}) keep a lease on the "
            "engine; give the agent a bus or a broker"
        )
    return source


class LeaseKeeper:
    """Takes the lease when it is free and renews it every ``ttl / 3`` while held."""

    def __init__(self, lease: Lease, log: Log) -> None:
        self.lease = lease
        self.log = log
        self.held = False
        self.valid_until = 0.0
        self._failures = 0

    @property
    def valid(self) -> bool:
        """True while this replica may run ticks: held, and renewed recently enough."""
        return self.held and asyncio.get_running_loop().time() < self.valid_until

    async def step(self) -> float:
        """One acquire or renew; returns how long to wait before the next one."""
        lease, loop = self.lease, asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(lease.ttl / 2):
                ok = await (lease.renew() if self.held else lease.acquire())
        except Exception as exc:  # the engine is down or slow: try again, keep the schedule
            self._failures += 1
            if self._failures == 1 or self._failures % 20 == 0:
                what = "renew" if self.held else "acquire"
                self.log.warning(
                    "lease %r: could not %s it (%d attempt(s)): %s",
                    lease.name,
                    what,
                    self._failures,
                    describe(exc),
                )
            if self.held and loop.time() >= self.valid_until:
                self.held = False
                self.log.warning("lease %r: not renewed in time, no longer running", lease.name)
            return min(RETRY.delay(self._failures), lease.ttl / 3)
        if self._failures:
            self.log.info("lease %r: engine answers again", lease.name)
            self._failures = 0
        if ok:
            if not self.held:
                self.log.info("lease %r taken by %s", lease.name, lease.holder)
            self.held = True
            self.valid_until = started + lease.ttl * VALIDITY
        elif self.held:
            self.held = False
            self.log.warning("lease %r lost to another replica", lease.name)
        return lease.ttl / 3

    async def run(self) -> None:
        while True:  # noqa: ASYNC110 - a timer: renewing is what the keeper is for
            await asyncio.sleep(await self.step())

    async def stop(self) -> None:
        """Release the lease (so a peer need not wait for it to expire), close it."""
        try:
            async with asyncio.timeout(min(self.lease.ttl, 5.0)):
                if self.held:
                    await self.lease.release()
        except Exception as exc:
            self.log.warning("lease %r: release failed: %s", self.lease.name, describe(exc))
        finally:
            self.held = False
            try:
                await self.lease.close()
            except Exception as exc:
                self.log.warning("lease %r: close failed: %s", self.lease.name, describe(exc))


async def run_tick(keeper: LeaseKeeper, tick: int, due: float, run: RunJob, log: Log) -> bool:
    """Run the job for ``tick`` (wall time ``due``) if this replica holds the lease and wins
    the claim. ``True`` when it ran."""
    lease = keeper.lease
    if not keeper.valid:
        return False
    if time.time() > due + lease.ttl:  # woke far too late: a peer may be on a later tick
        log.warning(
            "lease %r: tick %d missed (woke %.1f s late)", lease.name, tick, time.time() - due
        )
        return False
    try:
        async with asyncio.timeout(lease.ttl / 2):
            claimed = await lease.claim(tick)
    except Exception as exc:
        log.warning("lease %r: could not claim tick %d: %s", lease.name, tick, describe(exc))
        return False
    if not claimed:
        log.debug("lease %r: tick %d already run", lease.name, tick)
        return False
    log.debug("lease %r: tick %d claimed", lease.name, tick, extra={"tick": tick})
    await run()
    return True


async def single_loop(
    spec: PeriodicSpec | CronSpec,
    transport: Any,
    name: str,
    holder: str,
    run: RunJob,
    log: Log,
    skipped: Callable[[int], None] | None = None,
) -> None:
    """The schedule of one ``single=True`` job: a keeper, and the ticks it allows."""
    keeper = LeaseKeeper(open_lease(transport, name, holder, spec.lease_ttl), log)
    keeping = asyncio.get_running_loop().create_task(keeper.run(), name=f"lease {name}")
    try:
        if isinstance(spec, PeriodicSpec):
            await _periodic(spec, keeper, run, log, skipped)
        else:
            await _cron(spec, keeper, run, log)
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
        await asyncio.shield(keeper.stop())


async def _periodic(
    spec: PeriodicSpec,
    keeper: LeaseKeeper,
    run: RunJob,
    log: Log,
    skipped: Callable[[int], None] | None,
) -> None:
    period = spec.period
    if spec.start_after:
        await asyncio.sleep(spec.start_after)
    last: int | None = None  # the last tick this replica ran
    attempted = -1
    while True:
        tick = max(math.floor(time.time() / period) + 1, attempted + 1)
        if last is not None and tick > last + 1 and attempted == last:
            missed = tick - last - 1
            log.warning("run took too long: skipped %d periodic run(s)", missed)
            if skipped is not None:
                skipped(missed)
        due = tick * period
        wait = due - time.time() + (random.uniform(0, spec.jitter) if spec.jitter else 0.0)
        if wait > 0:
            await asyncio.sleep(wait)
        attempted = tick
        if await run_tick(keeper, tick, due, run, log):
            last = tick


async def _cron(spec: CronSpec, keeper: LeaseKeeper, run: RunJob, log: Log) -> None:
    async for fire in cron_fires(spec, log):
        await run_tick(keeper, int(fire.timestamp()), fire.timestamp(), run, log)

"""Leases: one holder at a time across processes, and a record of the ticks it ran.

A ``@periodic(..., single=True)`` or ``@cron(..., single=True)`` job runs in the replica that
holds the job's lease. A lease lives on an engine (the agent's broker, or its bus when it has
no broker) and expires when its holder stops renewing it — a SIGKILLed process, a partition —
so another replica takes over. A lease alone cannot promise that no tick runs twice (the old
holder may have run tick N an instant before it died, and the new holder's clock may still be
on tick N), so the holder also *claims* each tick before running it: the engine keeps the last
tick run, and a claim of a tick at or before it is refused.

Each engine implements :class:`Lease` in ``microhive/transports/<engine>/lease.py``, with a
function ``open_lease(transport, name, holder, ttl) -> Lease`` that :func:`open_lease` finds
from the transport's package.
"""

from __future__ import annotations

import importlib
import math
from abc import ABC, abstractmethod
from typing import Any

from .errors import ConfigurationError

DEFAULT_LEASE_TTL = 10.0
"""Seconds a lease outlives its holder's last renewal (the takeover time is about this)."""

TICK_RETENTION = 24 * 3600.0
"""How long an engine keeps the last tick run (only a takeover compares ticks)."""


class Lease(ABC):
    """A named lease on one engine, taken by ``holder`` for ``ttl`` seconds at a time.

    Every method may raise :class:`~microhive.errors.TransportError` (or the engine client's
    own error) when the engine is unreachable; the caller treats that as "not held".
    """

    def __init__(self, name: str, holder: str, ttl: float) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} holder={self.holder!r}>"

    @abstractmethod
    async def acquire(self) -> bool:
        """Take the lease if nobody holds it; ``True`` if this holder holds it now."""

    @abstractmethod
    async def renew(self) -> bool:
        """Extend the lease by ``ttl``; ``False`` when it was lost (another holder has it)."""

    @abstractmethod
    async def release(self) -> None:
        """Give the lease up now (a clean stop), so another replica need not wait ``ttl``."""

    @abstractmethod
    async def claim(self, tick: int) -> bool:
        """Record ``tick`` as run; ``False`` when this tick (or a later one) was claimed.

        Ticks only grow. Called by the holder before it runs a tick, so a tick is never run
        twice, even by an old holder and its successor around a takeover.
        """

    async def close(self) -> None:  # noqa: B027 - leases on a shared connection own nothing
        """Release what the lease opened for itself (its own connection)."""


def check_ttl(what: str, ttl: float) -> float:
    if (
        not isinstance(ttl, int | float)
        or isinstance(ttl, bool)
        or not math.isfinite(ttl)
        or ttl < 0.1
    ):
        raise ConfigurationError(f"{what}: lease_ttl must be a number of seconds >= 0.1")
    return float(ttl)


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    """The lease ``name`` on ``transport``'s engine (a bus or broker, connected or not).

    A transport of microhive's own has a ``lease`` module in its package; another transport
    may offer leases with a method ``open_lease(name, holder, ttl)``. Anything else raises
    :class:`ConfigurationError`.
    """
    own = getattr(transport, "open_lease", None)
    if callable(own):
        offered: Lease = own(name, holder, ttl)
        return offered
    package = type(transport).__module__.rpartition(".")[0]
    module = None
    if package.startswith(f"{__package__}.transports."):
        try:
            module = importlib.import_module(f"{package}.lease")
        except ModuleNotFoundError:
            module = None
    if module is None:
        raise ConfigurationError(
            f"{type(transport).__name__} offers no leases, so single=True schedules cannot "
            "run on it (use a memory, redis, amqp, nats or kafka bus or broker)"
        )
    lease: Lease = module.open_lease(transport, name, holder, ttl)
    return lease

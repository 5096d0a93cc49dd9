"""The seed's decorator API: ``@receiver``, ``@consumer``, ``@periodic``, ``@cron``, ``@on``.

Decorators only attach a spec to the function; nothing is registered anywhere. The agent
class collects the specs when it is defined, so a bad declaration fails at import time.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ..declarations import Queue, Signal
from ..errors import ConfigurationError
from ..leases import DEFAULT_LEASE_TTL, check_ttl
from ..retry import Backoff
from .specs import (
    HOOK_EVENTS,
    ConsumerSpec,
    HookSpec,
    PeriodicSpec,
    ReceiverSpec,
    Spec,
    check_timeout,
    make_cron,
)

F = TypeVar("F", bound=Callable[..., Any])

SPECS_ATTRIBUTE = "__microhive_specs__"


def specs_of(function: object) -> tuple[Spec, ...]:
    return tuple(getattr(function, SPECS_ATTRIBUTE, ()))


def _attach(function: F, spec: Spec, *, coroutine: bool = True) -> F:
    if coroutine and not inspect.iscoroutinefunction(function):
        name = getattr(function, "__qualname__", repr(function))
        raise ConfigurationError(f"{name}: a handler must be 'async def'")
    setattr(function, SPECS_ATTRIBUTE, (*specs_of(function), spec))
    return function


def receiver(*signals: Signal, timeout: float | None = 60) -> Callable[[F], F]:
    """Receive ``signals``; the handler gets ``signal``, ``sender`` and the arguments.

    A value returned by the handler answers a call of the signal.
    """
    if not signals or not all(isinstance(s, Signal) for s in signals):
        raise ConfigurationError("@receiver needs one or more Signal declarations")
    spec = ReceiverSpec(tuple(signals), check_timeout("@receiver", timeout))
    return lambda function: _attach(function, spec)


def consumer(
    queue: Queue,
    *,
    timeout: float | None = 60,
    concurrency: int = 1,
    retries: int = 3,
    backoff: float | Backoff = 1.0,
    dead_letter: bool = True,
    autoack: bool = False,
    batch: int | None = None,
    batch_timeout: float = 0.05,
) -> Callable[[F], F]:
    """Consume ``queue``: ack after the handler returned, retry on failure, then dead-letter.

    ``concurrency`` bounds handlers running at once (and so the prefetch). ``retries`` is how
    many times a failed message is tried again; ``backoff`` the first delay in seconds (or a
    :class:`Backoff`). ``autoack=True`` acknowledges on receipt: at-most-once, no retries.
    ``batch=N`` hands the handler a list of up to N payloads, gathered for at most
    ``batch_timeout`` seconds after the first arrived, and acknowledged together when it
    returns; ``timeout`` then covers the whole batch.
    """
    if not isinstance(queue, Queue):
        raise ConfigurationError("@consumer needs a Queue declaration")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigurationError(f"@consumer({queue.name!r}): concurrency must be >= 1")
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"@consumer({queue.name!r}): retries must be >= 0")
    if isinstance(backoff, int | float) and not isinstance(backoff, bool):
        try:
            backoff = Backoff(initial=float(backoff))
        except ConfigurationError as exc:
            raise ConfigurationError(f"@consumer({queue.name!r}): {exc}") from None
    elif not isinstance(backoff, Backoff):
        raise ConfigurationError(
            f"@consumer({queue.name!r}): backoff must be seconds (a number) or a Backoff"
        )
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ConfigurationError(f"@consumer({queue.name!r}): batch must be an integer >= 1")
    if (
        not isinstance(batch_timeout, int | float)
        or not math.isfinite(batch_timeout)
        or batch_timeout < 0
    ):
        raise ConfigurationError(f"@consumer({queue.name!r}): batch_timeout must be a number >= 0")
    spec = ConsumerSpec(
        queue,
        check_timeout(f"@consumer({queue.name!r})", timeout),
        concurrency,
        retries,
        backoff,
        dead_letter,
        autoack,
        batch or 0,
        float(batch_timeout),
    )
    return lambda function: _attach(function, spec)


def periodic(
    period: float,
    *,
    timeout: float | None = 60,
    start_after: float = 0,
    jitter: float = 0,
    single: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Callable[[F], F]:
    """Run every ``period`` seconds; a run that is still going makes the next one skip.

    By default every replica (process) of the agent runs its own schedule. ``single=True``
    runs each tick once across them: ticks fall on wall-clock multiples of ``period``, and
    the replica holding a lease on the engine runs them; it expires ``lease_ttl`` seconds
    after its holder stopped renewing it (see docs/concepts.md, single-runner schedules).
    """
    for name, value, minimum in (
        ("period", period, 1e-3),
        ("start_after", start_after, 0),
        ("jitter", jitter, 0),
    ):
        if not isinstance(value, int | float) or not math.isfinite(value) or value < minimum:
            raise ConfigurationError(f"@periodic: {name} must be a number >= {minimum}")
    spec = PeriodicSpec(
        float(period),
        check_timeout("@periodic", timeout),
        float(start_after),
        float(jitter),
        _check_single("@periodic", single),
        check_ttl("@periodic", lease_ttl),
    )
    return lambda function: _attach(function, spec)


def cron(
    expression: str,
    *,
    timeout: float | None = 60,
    tz: str | ZoneInfo | None = None,
    single: bool = False,
    lease_ttl: float = DEFAULT_LEASE_TTL,
) -> Callable[[F], F]:
    """Run on a 5-field cron schedule (``"0 */4 * * *"``, ``"@daily"``) in ``tz``.

    ``tz`` defaults to the machine's local time zone. ``single=True``: each fire time runs
    once across the agent's replicas, as for :func:`periodic`."""
    spec = replace(
        make_cron(expression, timeout, tz),
        single=_check_single(f"@cron({expression!r})", single),
        lease_ttl=check_ttl(f"@cron({expression!r})", lease_ttl),
    )
    return lambda function: _attach(function, spec)


def _check_single(what: str, single: bool) -> bool:
    if not isinstance(single, bool):
        raise ConfigurationError(f"{what}: single must be True or False")
    return single


def on(event: str) -> Callable[[F], F]:
    """A lifecycle or error hook: ``pre_start``, ``post_start``, ``pre_stop``, ``post_stop``,
    ``error`` (any handler) or ``error_<handler name>``. Sync or async."""
    if not isinstance(event, str) or not (event in HOOK_EVENTS or event.startswith("error_")):
        raise ConfigurationError(
            f"@on({event!r}): unknown event (use {', '.join(HOOK_EVENTS)} or error_<handler>)"
        )
    spec = HookSpec(event)
    return lambda function: _attach(function, spec, coroutine=False)

"""What the decorators record on a handler: plain frozen values, read when the class is built."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from ..declarations import Queue, Signal
from ..errors import ConfigurationError
from ..leases import DEFAULT_LEASE_TTL
from ..retry import Backoff

HOOK_EVENTS = ("pre_start", "post_start", "pre_stop", "post_stop", "error")


def check_timeout(what: str, timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, int | float) or not math.isfinite(timeout) or timeout <= 0:
        raise ConfigurationError(f"{what}: timeout must be a positive number of seconds or None")
    return float(timeout)


@dataclass(frozen=True, slots=True)
class ReceiverSpec:
    signals: tuple[Signal, ...]
    timeout: float | None

    def signal(self, name: str) -> Signal:
        """The declared signal called ``name`` (the bus only delivers subscribed names)."""
        for signal in self.signals:
            if signal.name == name:
                return signal
        raise LookupError(f"not a signal of this receiver: {name!r}")


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    queue: Queue
    timeout: float | None
    concurrency: int
    retries: int
    backoff: Backoff
    dead_letter: bool
    autoack: bool
    batch: int = 0
    """0: the handler gets one message at a time; N: a list of up to N payloads."""
    batch_timeout: float = 0.05


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    period: float
    timeout: float | None
    start_after: float
    jitter: float
    single: bool = False
    """Run once per tick across the agent's replicas (microhive/agent/single.py)."""
    lease_ttl: float = DEFAULT_LEASE_TTL


@dataclass(frozen=True, slots=True)
class CronSpec:
    expression: str
    timeout: float | None
    tz: ZoneInfo | None
    single: bool = False
    lease_ttl: float = DEFAULT_LEASE_TTL

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment`` (an aware datetime), in UTC."""
        if self.tz is not None:
            local = moment.astimezone(self.tz)
            result: datetime = croniter(self.expression, local).get_next(datetime)
            # in UTC: times in one zone compare by wall clock, and the hour a DST change
            # repeats would make two different fire times look equal
            return result.astimezone(UTC)
        # the machine's local time: naive, so each fire time gets the UTC offset in force
        # on its own date (a fixed offset taken now would be an hour off across a DST change)
        naive = moment.astimezone().replace(tzinfo=None)
        fire: datetime = croniter(self.expression, naive).get_next(datetime)
        return fire.astimezone().astimezone(UTC)


def make_cron(expression: str, timeout: float | None, tz: str | ZoneInfo | None) -> CronSpec:
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        raise ConfigurationError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            "(minute hour day month weekday) or a macro such as @daily"
        )
    if len(expression.split()) > 5:
        raise ConfigurationError(
            f"invalid cron expression {expression!r}: use 5 fields (seconds are not supported)"
        )
    zone: ZoneInfo | None
    if tz is None or isinstance(tz, ZoneInfo):
        zone = tz
    else:
        try:
            zone = ZoneInfo(tz)
        except Exception:
            raise ConfigurationError(f"unknown time zone {tz!r}") from None
    spec = CronSpec(expression, check_timeout(f"cron {expression!r}", timeout), zone)
    try:  # croniter accepts dates that never come, such as 31 February
        spec.next_after(datetime.now(UTC))
    except Exception as exc:
        raise ConfigurationError(f"cron expression {expression!r} never fires: {exc}") from None
    return spec


@dataclass(frozen=True, slots=True)
class HookSpec:
    event: str


Spec = ReceiverSpec | ConsumerSpec | PeriodicSpec | CronSpec | HookSpec

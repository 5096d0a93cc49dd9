"""What an agent class listens to and when it runs, as JSON data.

One description serves ``microhive agents`` (an agent class, before it runs) and the
heartbeat a running agent sends (microhive/agent/heartbeat.py), so the shell and the console
show the same thing.
"""

from __future__ import annotations

import datetime
import math
from typing import TYPE_CHECKING, Any

from .specs import ConsumerSpec, CronSpec, HookSpec, PeriodicSpec, ReceiverSpec

if TYPE_CHECKING:
    from .agent import MicroAgent

FIRES = 3
"""How many next fire times a schedule shows."""


def next_fires(
    spec: PeriodicSpec | CronSpec, now: datetime.datetime, started: float | None = None
) -> list[float]:
    """The next fire times as Unix seconds (jitter aside). A periodic schedule runs relative
    to its agent's start: ``started`` (Unix seconds) for a running agent, else ``now``."""
    if isinstance(spec, PeriodicSpec):
        first = (now.timestamp() if started is None else started) + spec.start_after
        due = max(0, math.ceil((now.timestamp() - first) / spec.period))
        return [first + (due + index) * spec.period for index in range(FIRES)]
    fires = []
    moment = now
    for _ in range(FIRES):
        moment = spec.next_after(moment)
        fires.append(moment.timestamp())
    return fires


def describe(
    cls: type[MicroAgent], now: datetime.datetime, started: float | None = None
) -> dict[str, Any]:
    """One agent class as JSON data: receivers, consumers, schedules (with their next fire
    times, counted from ``started`` for a running agent) and hooks."""
    from .plain import target_of  # the agent class module imports this one

    handlers = cls.handlers
    receivers = []
    for handler in handlers.receivers:
        assert isinstance(handler.spec, ReceiverSpec)
        receivers.append(
            {
                "handler": handler.name,
                "signals": [signal.name for signal in handler.spec.signals],
                "timeout": handler.spec.timeout,
            }
        )
    consumers = []
    for handler in handlers.consumers:
        spec = handler.spec
        if isinstance(spec, ConsumerSpec):
            consumers.append(
                {
                    "handler": handler.name,
                    "queue": spec.queue.name,
                    "concurrency": spec.concurrency,
                    "retries": spec.retries,
                    "batch": spec.batch,
                    "dead_letter": spec.dead_letter,
                    "timeout": spec.timeout,
                }
            )
        else:  # a dead-letter consumer and the like: name what it reads
            consumers.append({"handler": handler.name, "queue": str(getattr(spec, "queue", spec))})
    schedules = []
    for handler in handlers.schedules:
        spec = handler.spec
        if isinstance(spec, PeriodicSpec):
            every = f"every {spec.period:g} s" + (
                f" after {spec.start_after:g} s" if spec.start_after else ""
            )
            schedules.append(
                {
                    "handler": handler.name,
                    "when": every,
                    "next": next_fires(spec, now, started),
                    "single": spec.single,
                }
            )
        elif isinstance(spec, CronSpec):
            zone = f" ({spec.tz.key})" if spec.tz is not None else " (local time)"
            schedules.append(
                {
                    "handler": handler.name,
                    "when": f"cron {spec.expression}{zone}",
                    "next": next_fires(spec, now),
                    "single": spec.single,
                }
            )
    hooks = [
        {"handler": handler.name, "event": handler.spec.event}
        for handler in handlers.hooks
        if isinstance(handler.spec, HookSpec)
    ]
    return {
        "agent": target_of(cls),
        "receivers": receivers,
        "consumers": consumers,
        "schedules": schedules,
        "hooks": hooks,
    }

"""``microhive agents module[:Class]...``: what each agent class listens to and when it runs."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import click

from ..agent.agent import MicroAgent
from ..agent.specs import ConsumerSpec, CronSpec, HookSpec, PeriodicSpec, ReceiverSpec
from ..errors import ConfigurationError
from .common import connection_options, guarded, resolve_options
from .queues import timestamp

FIRES = 3
"""How many next fire times a schedule shows."""


def next_fires(spec: PeriodicSpec | CronSpec, now: datetime.datetime) -> list[float]:
    """The next fire times as Unix seconds; a periodic schedule counts from a start ``now``
    (its jitter aside), as it runs relative to its agent's start."""
    if isinstance(spec, PeriodicSpec):
        first = now.timestamp() + spec.start_after
        return [first + index * spec.period for index in range(FIRES)]
    fires = []
    moment = now
    for _ in range(FIRES):
        moment = spec.next_after(moment)
        fires.append(moment.timestamp())
    return fires


def describe(cls: type[MicroAgent], now: datetime.datetime) -> dict[str, Any]:
    """One agent class as JSON data."""
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
                {"handler": handler.name, "when": every, "next": next_fires(spec, now)}
            )
        elif isinstance(spec, CronSpec):
            zone = f" ({spec.tz.key})" if spec.tz is not None else " (local time)"
            schedules.append(
                {
                    "handler": handler.name,
                    "when": f"cron {spec.expression}{zone}",
                    "next": next_fires(spec, now),
                }
            )
    hooks = [
        {"handler": handler.name, "event": handler.spec.event}
        for handler in handlers.hooks
        if isinstance(handler.spec, HookSpec)
    ]
    return {
        "agent": f"{cls.__module__}:{cls.__qualname__}",
        "receivers": receivers,
        "consumers": consumers,
        "schedules": schedules,
        "hooks": hooks,
    }


def _text(agent: dict[str, Any]) -> list[str]:
    lines = [agent["agent"]]
    if agent["receivers"]:
        lines.append("  receivers:")
        lines += [
            f"    {r['handler']}: signals {', '.join(r['signals'])}" for r in agent["receivers"]
        ]
    if agent["consumers"]:
        lines.append("  consumers:")
        for c in agent["consumers"]:
            details = ", ".join(
                f"{key} {c[key]}" for key in ("concurrency", "retries", "batch") if c.get(key)
            )
            lines.append(
                f"    {c['handler']}: queue {c['queue']}" + (f" ({details})" if details else "")
            )
    if agent["schedules"]:
        lines.append("  schedules:")
        for s in agent["schedules"]:
            lines.append(
                f"    {s['handler']}: {s['when']}; next {', '.join(map(timestamp, s['next']))}"
            )
    if agent["hooks"]:
        lines.append("  hooks:")
        lines += [f"    {h['handler']}: {h['event']}" for h in agent["hooks"]]
    if len(lines) == 1:
        lines.append("  (no handlers)")
    return lines


@click.command()
@click.argument("targets", nargs=-1, metavar="MODULE[:Class]...")
@connection_options
@guarded
def agents(targets: Sequence[str], as_json: bool, **common: Any) -> None:
    """Each agent class with its receivers, consumers, schedules (next fire times) and hooks."""
    from ..runner import load_targets

    options = resolve_options(as_json=as_json, **common)
    if not targets:
        raise ConfigurationError("no agents: give module or module:Class targets")
    now = datetime.datetime.now(datetime.UTC)
    described = [describe(cls, now) for cls in load_targets(targets)]
    if options.as_json:
        for agent in described:
            options.emit_json(agent)
        return
    for index, agent in enumerate(described):
        if index:
            click.echo("")
        for line in _text(agent):
            click.echo(line)

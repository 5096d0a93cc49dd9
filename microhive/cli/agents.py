"""``microhive agents module[:Class]...``: what each agent class listens to and when it runs."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

import click

from ..agent.inventory import describe
from ..errors import ConfigurationError
from .common import connection_options, guarded, resolve_options
from .queues import timestamp


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

"""``microhive send``, ``signal`` and ``call``: put one message, signal or call on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import click

from ..declarations import Signal
from ..errors import CallError, ConfigurationError
from .common import (
    Options,
    connection_options,
    fail,
    guarded,
    parse_pairs,
    parse_value,
    resolve_options,
)

SENDER = "microhive-cli"
"""The sender name the receivers see for what this command sends."""


@click.command()
@click.argument("queue")
@click.argument("payload", metavar="JSON")
@click.option("--key", help="Message key (ordering on keyed engines; tail --key).")
@click.option("--delay", type=float, help="Deliver after this many seconds.")
@click.option("--header", "headers", multiple=True, metavar="K=V", help="A header (repeatable).")
@connection_options
@guarded
def send(
    queue: str,
    payload: str,
    key: str | None,
    delay: float | None,
    headers: Sequence[str],
    as_json: bool,
    **common: Any,
) -> None:
    """Send JSON (a value; plain text counts as a string) to QUEUE; prints the message id."""
    from ..broker import QueueBroker

    options = resolve_options(as_json=as_json, **common)
    value = parse_value(payload)
    header_map: dict[str, str] = {}
    for pair in headers:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise ConfigurationError(f"--header: expected k=v, got {pair!r}")
        header_map[name] = text

    async def work() -> str:
        async with QueueBroker.from_url(options.broker_url) as broker:
            return await broker.queue(queue).send(
                value, key=key, delay=delay, headers=header_map or None, sender=SENDER
            )

    message_id = asyncio.run(work())
    if options.as_json:
        options.emit_json({"queue": queue, "id": message_id})
    else:
        click.echo(message_id)


def _signal(options: Options, name: str, arguments: dict[str, Any]) -> Signal:
    """The catalog's declaration of ``name``, else an ad-hoc one taking exactly ``arguments``."""
    declared: Signal | None = options.catalog.signals.get(name)
    if declared is not None:
        return declared
    return Signal(name, list(arguments))


@click.command(name="signal")
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="K=V...")
@connection_options
@guarded
def signal_command(name: str, pairs: Sequence[str], as_json: bool, **common: Any) -> None:
    """Broadcast signal NAME with arguments k=v (each value JSON, else a string)."""
    from ..bus import SignalBus

    options = resolve_options(as_json=as_json, **common)
    arguments = parse_pairs(pairs, "signal")
    sig = _signal(options, name, arguments)

    async def work() -> None:
        async with SignalBus.from_url(options.bus_url) as bus:
            await bus.send(sig, SENDER, **arguments)

    asyncio.run(work())
    if options.as_json:
        options.emit_json({"signal": name, "sent": arguments})
    else:
        click.echo(f"sent {name}")


@click.command()
@click.argument("name")
@click.argument("pairs", nargs=-1, metavar="K=V...")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait.")
@connection_options
@guarded
def call(name: str, pairs: Sequence[str], timeout: float, as_json: bool, **common: Any) -> None:
    """Call signal NAME with arguments k=v and print the first answer as JSON."""
    from ..bus import SignalBus

    options = resolve_options(as_json=as_json, **common)
    arguments = parse_pairs(pairs, "call")
    sig = _signal(options, name, arguments)

    async def work() -> Any:
        async with SignalBus.from_url(options.bus_url) as bus:
            return await bus.call(sig, SENDER, timeout=timeout, **arguments)

    try:
        answer = asyncio.run(work())
    except CallError as exc:
        fail(f"{type(exc).__name__}: {exc}", 1)
    options.emit_json(answer)

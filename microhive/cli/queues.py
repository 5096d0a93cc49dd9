"""``microhive queues`` (length and dead letters per queue) and ``microhive tail`` (follow one)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
from collections.abc import Sequence
from typing import Any

import click

from ..envelope import Envelope
from ..errors import ConfigurationError
from .common import Options, connection_options, guarded, resolve_options

MISSING = "—"
"""Shown for a figure the engine cannot tell (QueueStats field None; JSON: null)."""


def queue_names(options: Options, given: Sequence[str], targets: Sequence[str]) -> list[str]:
    """The queues given, else those of the catalogs and of the agent classes, in that order."""
    from ..agent.specs import ConsumerSpec
    from ..runner import load_targets

    names = list(given) + list(options.catalog.queues)
    for cls in load_targets(targets) if targets else []:
        names += [
            h.spec.queue.name for h in cls.handlers.consumers if isinstance(h.spec, ConsumerSpec)
        ]
        if cls.catalog is not None:
            names += list(cls.catalog.queues)
    unique = list(dict.fromkeys(names))
    if not unique:
        raise ConfigurationError("no queues: give QUEUE names, --catalog or --agents module:Class")
    return unique


@click.command()
@click.argument("names", nargs=-1, metavar="[QUEUE]...")
@click.option(
    "--agents", "targets", multiple=True, metavar="module:Class", help="Their queues (repeatable)."
)
@connection_options
@guarded
def queues(names: Sequence[str], targets: Sequence[str], as_json: bool, **common: Any) -> None:
    """Length, consumers, in flight and dead letters of each queue given (or of the catalogs'
    and agents' queues); "—" where the engine cannot tell (docs/operations.md)."""
    from ..broker import QueueBroker
    from ..stats import QueueStats

    options = resolve_options(as_json=as_json, **common)
    chosen = queue_names(options, names, targets)

    async def work() -> list[QueueStats]:
        async with QueueBroker.from_url(options.broker_url) as broker:
            return [await broker.queue(name).stats() for name in chosen]

    rows = asyncio.run(work())
    if options.as_json:
        for row in rows:
            options.emit_json(row.as_dict())
        return
    options.table(
        None,
        ("queue", "length", "consumers", "in flight", "dead letters"),
        [
            tuple(MISSING if value is None else value for value in row.as_dict().values())
            for row in rows
        ],
    )


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A payload as JSON data (a schema's model is dumped as JSON)."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json") if callable(dump) else value


def envelope_data(envelope: Envelope) -> dict[str, Any]:
    return {
        "kind": str(envelope.kind.value),
        "name": envelope.name,
        "id": envelope.id,
        "sender": envelope.sender,
        "sent_at": envelope.sent_at,
        "attempt": envelope.attempt,
        "headers": dict(envelope.headers),
        "correlation_id": envelope.correlation_id,
        "reply_to": envelope.reply_to,
        "payload": jsonable(envelope.payload),
    }


def envelope_line(envelope: Envelope) -> str:
    """id, sent_at, sender, payload JSON: one line per message."""
    payload = json.dumps(jsonable(envelope.payload), ensure_ascii=False, default=str)
    return f"{envelope.id}  {timestamp(envelope.sent_at)}  {envelope.sender or '-'}  {payload}"


IDLE = 1.0
"""With --no-follow: the history has been read once nothing more came for this long."""


@click.command()
@click.argument("queue")
@click.option("--last", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--key", help="Only the messages sent with this key.")
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="Keep printing new messages (Ctrl-C stops), or stop after the history.",
)
@connection_options
@guarded
def tail(
    queue: str, last: int, key: str | None, follow: bool, as_json: bool, **common: Any
) -> None:
    """The last messages of QUEUE, then each new one, without consuming them."""
    from ..broker import QueueBroker

    options = resolve_options(as_json=as_json, **common)

    async def work() -> None:
        async with QueueBroker.from_url(options.broker_url) as broker:
            messages = broker.queue(queue).tail(last=last, key=key)
            printed = 0
            while follow or printed < last:
                try:
                    if follow:
                        envelope = await anext(messages)
                    else:
                        envelope = await asyncio.wait_for(anext(messages), IDLE)
                except (StopAsyncIteration, TimeoutError):
                    return
                if options.as_json:
                    options.emit_json(envelope_data(envelope))
                else:
                    click.echo(envelope_line(envelope))
                printed += 1

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(work())

"""``microhive declare --broker URL --catalog signals.json``: create a catalog's queues up front."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import click

from ..errors import ConfigurationError, MicroHiveError


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--catalog", multiple=True, help="Catalog JSON file (repeatable).")
@click.option("--broker", "--transport", "url", required=True, help="Queue broker URL.")
def declare(targets: Sequence[str], catalog: Sequence[str], url: str) -> None:
    """Create every queue (with its dead letters, delays, exchanges and bindings) of the
    catalogs and of the agent classes given (module:Class or module, as for `run`) on the
    broker, idempotently — so that plain publishers can start before any consumer."""
    from ..agent.specs import ConsumerSpec
    from ..broker import QueueBroker
    from ..runner import load_catalog, load_targets
    from ..urls import redact

    async def run() -> list[str]:
        queues = list(load_catalog(catalog).queues.values())
        for cls in load_targets(targets) if targets else []:
            queues += [
                h.spec.queue for h in cls.handlers.consumers if isinstance(h.spec, ConsumerSpec)
            ]
            if cls.catalog is not None:
                queues += list(cls.catalog.queues.values())
        if not queues:
            raise ConfigurationError("nothing to declare: give --catalog or module:Class targets")
        unique = list({queue.name: queue for queue in queues}.values())
        async with QueueBroker.from_url(url) as broker:
            return await broker.declare(unique)

    try:
        for name in asyncio.run(run()):
            click.echo(f"declared {name} on {redact(url)}")
    except ConfigurationError as exc:
        click.echo(f"microhive: error: {exc}", err=True)
        sys.exit(2)
    except (MicroHiveError, OSError) as exc:
        click.echo(f"microhive: error: {exc}", err=True)
        sys.exit(1)

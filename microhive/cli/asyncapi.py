"""``microhive asyncapi app.agents --out asyncapi.json``: the AsyncAPI 3.0.0 document."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ..errors import ConfigurationError, MicroHiveError


@click.command()
@click.argument("targets", nargs=-1)
@click.option("--catalog", multiple=True, help="Catalog JSON file (repeatable).")
@click.option("--transport", help="URL for both bus and broker (default memory://).")
@click.option("--bus", help="Signal bus URL whose channel names to describe.")
@click.option("--broker", help="Queue broker URL whose channel names to describe.")
@click.option("--title", default="microhive application", show_default=True)
@click.option("--version", "doc_version", default="1.0.0", show_default=True)
@click.option(
    "--out",
    "-o",
    default="-",
    help="Output file (default stdout); .yaml/.yml writes YAML when PyYAML is installed.",
)
def asyncapi(
    targets: Sequence[str],
    catalog: Sequence[str],
    transport: str | None,
    bus: str | None,
    broker: str | None,
    title: str,
    doc_version: str,
    out: str,
) -> None:
    """Write an AsyncAPI 3.0.0 document of agent classes (module:Class or module, as for
    `run`) and catalogs, with the channel names and bindings of the given transports."""
    from ..asyncapi import describe, render
    from ..runner import load_catalog, load_targets

    try:
        if not targets and not catalog:
            raise ConfigurationError("nothing to describe: give module:Class targets or --catalog")
        classes = load_targets(targets) if targets else []
        document = describe(
            classes,
            load_catalog(catalog),
            bus=bus or transport or "memory://",
            broker=broker or transport or "memory://",
            title=title,
            version=doc_version,
        )
        data = render(document, None if out == "-" else out)
        if out == "-":
            sys.stdout.buffer.write(data)
        else:
            Path(out).write_bytes(data)
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except (MicroHiveError, OSError) as exc:
        _fail(str(exc), 1)


def _fail(message: str, code: int) -> None:
    click.echo(f"microhive: error: {message}", err=True)
    sys.exit(code)

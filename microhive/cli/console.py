"""``microhive console [MODULE[:Class]...]``: the live web console, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Sequence
from typing import Any

import click

from ..errors import ConfigurationError
from .common import connection_options, guarded, resolve_options


def _results(given: str | None, broker_url: str) -> str | None:
    """Where the jobs are read: as given, else where tasks on this broker keep them (a
    Redis or NATS broker's own engine), else nowhere."""
    if given is not None:
        return None if given.lower() == "none" else given
    from ..broker import QueueBroker
    from ..tasks.stores.engines import results_url_of

    try:
        url = results_url_of(QueueBroker.from_url(broker_url))
    except ConfigurationError:
        return None
    return None if url.startswith("memory") else url


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@click.command()
@click.argument("targets", nargs=-1, metavar="[MODULE[:Class]]...")
@click.option("--queue", "queues", multiple=True, help="Also watch this queue (repeatable).")
@click.option("--signal", "signals", multiple=True, help="Also show this signal (repeatable).")
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8642, show_default=True)
@click.option(
    "--token",
    envvar="MICROHIVE_CONSOLE_TOKEN",
    help="Log in with this token (or MICROHIVE_CONSOLE_TOKEN); at least 8 characters.",
)
@click.option(
    "--user",
    envvar="MICROHIVE_CONSOLE_USER",
    metavar="NAME:PASSWORD",
    help="Log in with this user and password (or MICROHIVE_CONSOLE_USER).",
)
@click.option(
    "--results",
    metavar="URL",
    help="The tasks' result store (Redis or NATS URL) for the Jobs panel; default: the "
    "broker's own on Redis and NATS, as tasks keep them; 'none' for no panel.",
)
@click.option("--read-only", is_flag=True, help="Nobody may requeue or purge, even logged in.")
@click.option(
    "--every", type=click.FloatRange(min=0.1), default=1.0, show_default=True,
    help="Seconds between two samples of the queues.",
)  # fmt: skip
@connection_options
@guarded
def console(
    targets: Sequence[str],
    queues: Sequence[str],
    signals: Sequence[str],
    bind: str,
    port: int,
    token: str | None,
    user: str | None,
    read_only: bool,
    results: str | None,
    every: float,
    as_json: bool,
    **common: Any,
) -> None:
    """A live web console: agents alive by their heartbeats, queues with length and rates,
    dead letters to requeue or purge, signals flowing.

    It watches the queues and signals of the catalogs and of the agent classes given, those
    named with --queue/--signal, and whatever running agents' heartbeats report.
    """
    try:
        from ..console import console_app
        from ..console.serve import serve
    except ImportError as exc:
        raise ConfigurationError(
            f"the console needs the 'console' extra: pip install 'microhive[console]' ({exc})"
        ) from None
    from ..runner import load_targets

    options = resolve_options(as_json=as_json, **common)
    classes = load_targets(targets) if targets else []
    bus: str | None = options.bus_url
    try:  # a bus-less engine (Kafka): queues only
        from ..bus import SignalBus

        SignalBus.from_url(options.bus_url)  # checks the URL; connects nothing
    except ConfigurationError as exc:
        click.echo(f"microhive: warning: no signals or agents shown: {exc}", err=True)
        bus = None
    app = console_app(
        bus=bus,
        broker=options.broker_url,
        catalog=options.catalog,
        agents=classes,
        queues=queues,
        signals=signals,
        token=token,
        user=user,
        read_only=read_only,
        every=every,
        results=_results(results, options.broker_url),
    )
    mode = app.auth.mode()
    if not _loopback(bind):
        click.echo(
            f"microhive: warning: listening on {bind}, beyond this machine: serve it behind "
            "TLS (a reverse proxy), since tokens and passwords travel in the clear otherwise",
            err=True,
        )

    def announce(url: str) -> None:
        if options.as_json:
            options.emit_json({"console": url, **mode})
        else:
            click.echo(f"microhive console on {url}")
            if mode["why"]:
                click.echo(f"  {mode['why']}")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, bind, port, announce))

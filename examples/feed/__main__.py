"""``python -m examples.feed``: the company event feed, in one process or in several.

::

    python -m examples.feed                                  # memory://: one process, no servers
    python -m examples.feed --transport amqp://guest:guest@127.0.0.1:5672/ --workers 2

On ``memory://`` the registrar, the feed worker, the feed page and the admin page share one
process and one port. On any other transport each runs as a process of its own: the feed
page (and admin) on ``--port``, the registrar on ``--port + 1``, and ``--workers`` feed
workers (``microhive run examples.feed.agent:FeedAgent``); Ctrl-C stops them all. One of
them alone: ``--only registrar`` or ``--only page``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

import click
import uvicorn
from fastapi import FastAPI

from microhive import logs

from .app import demo_app, page_app, registrar_app
from .store import DEFAULT_DATABASE

WORKER = "examples.feed.agent:FeedAgent"


def serve(app: FastAPI, host: str, port: int, log_level: str) -> None:
    # a page keeps its live stream open: give connections 3 s at shutdown, not forever
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=3)


def supervise(commands: dict[str, list[str]], env: dict[str, str]) -> int:
    """Start every command; stop them all on SIGINT/SIGTERM or when one of them exits."""
    children = {
        name: subprocess.Popen([sys.executable, *argv], env=env) for name, argv in commands.items()
    }
    stopping: list[int] = []

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        ended = [(name, child) for name, child in children.items() if child.poll() is not None]
        if ended:
            name, child = ended[0]
            click.echo(
                f"feed: {name} exited with {child.returncode}; stopping the others", err=True
            )
            code = 1
            break
        time.sleep(0.2)
    for child in children.values():
        if child.poll() is None:
            child.terminate()
    for child in children.values():
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return code


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--transport",
    envvar="FEED_TRANSPORT",
    default="memory://",
    show_default=True,
    help="Broker URL (also FEED_TRANSPORT).",
)
@click.option(
    "--database",
    envvar="FEED_DATABASE_URL",
    default=DEFAULT_DATABASE,
    show_default=True,
    help="SQLite or PostgreSQL URL of the feed (also FEED_DATABASE_URL).",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, help="The feed page's port.")
@click.option("--workers", default=2, show_default=True, help="Feed worker processes.")
@click.option("--only", type=click.Choice(["registrar", "page"]), help="Run only this service.")
@click.option("--log-level", default="info", show_default=True)
def main(
    transport: str,
    database: str,
    host: str,
    port: int,
    workers: int,
    only: str | None,
    log_level: str,
) -> None:
    """The company event feed of seed 001: registrar, feed worker, feed and admin pages."""
    logs.configure(log_level.upper())
    memory = transport.startswith("memory://")
    if only == "registrar":
        serve(registrar_app(transport), host, port, log_level)
    elif only == "page":
        serve(page_app(transport, database), host, port, log_level)
    elif memory:
        click.echo(f"feed: everything on {transport} at http://{host}:{port}/", err=True)
        serve(demo_app(transport, database), host, port, log_level)
    else:
        env = {**os.environ, "FEED_TRANSPORT": transport, "FEED_DATABASE_URL": database}
        env["MICROHIVE_TRANSPORT"] = transport
        common = ["-m", "examples.feed", "--host", host, "--log-level", log_level]
        commands = {
            "page": [*common, "--only", "page", "--port", str(port)],
            "registrar": [*common, "--only", "registrar", "--port", str(port + 1)],
        }
        for number in range(workers):
            commands[f"worker {number + 1}"] = ["-m", "microhive", "run", WORKER]
        click.echo(
            f"feed: page http://{host}:{port}/, registrar http://{host}:{port + 1}/api, "
            f"{workers} worker(s)",
            err=True,
        )
        sys.exit(supervise(commands, env))


if __name__ == "__main__":
    main(prog_name="python -m examples.feed")

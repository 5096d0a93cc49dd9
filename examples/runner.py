"""What the routed examples' ``__main__`` modules share: one command that runs every agent of
an example in this process, on the URL given, with the example's own settings.

``microhive run`` takes agent settings only from a TOML file; the examples take the few that
matter (log file, number of tasks, seed) as options, so one command line is enough.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from microhive import logs
from microhive.agent.agent import MicroAgent
from microhive.errors import ConfigurationError, MicroHiveError
from microhive.runner import run_agents
from microhive.settings import RunSettings
from microhive.urls import redact, resolve

NO_ROUTING = (
    "{broker} has no exchanges (no 'routing' capability): run this example on memory:// or amqp://"
)

F = Callable[..., Any]


def common_options(command: F) -> F:
    """``--url``, ``--duration``, ``--count``, ``--batch``, ``--seed``, ``--log-level``."""
    for option in reversed(
        (
            click.option(
                "--url",
                default="memory://",
                show_default=True,
                help="Transport URL of bus and broker: memory:// (one process) or amqp://...",
            ),
            click.option(
                "--duration",
                type=click.FloatRange(min=0, min_open=True),
                help="Stop by itself after this many seconds (default: at Ctrl-C or SIGTERM).",
            ),
            click.option(
                "--count",
                type=click.IntRange(min=0),
                help="Publish this many messages, then only consume (default: no end).",
            ),
            click.option(
                "--batch",
                type=click.IntRange(min=1),
                default=1,
                show_default=True,
                help="Messages published per tick (a tick every 0.5 s).",
            ),
            click.option("--seed", type=int, help="Random seed: the same run again."),
            click.option("--log-level", default="INFO", show_default=True),
        )
    ):
        command = option(command)
    return command


def run_example(
    agents: Sequence[type[MicroAgent]],
    catalog: Path,
    *,
    url: str,
    duration: float | None,
    log_level: str,
    settings: Mapping[str, Any],
) -> None:
    """Run ``agents`` (upstream first) until the duration ends or a signal arrives; every
    agent gets the same ``settings``. Errors end the process with one line, as ``microhive``
    commands do: 2 for configuration, 1 for the engine."""
    try:
        run_settings = RunSettings(
            transport=url,
            catalog=[str(catalog)],
            duration=duration,
            log_level=log_level.upper(),
            grace_period=5.0,
            agents={agent.__name__: dict(settings) for agent in agents},
        )
        if not resolve(url, "broker").capabilities.routing:
            raise ConfigurationError(NO_ROUTING.format(broker=redact(url)))
        logs.configure(run_settings.log_level)
        asyncio.run(run_agents(agents, run_settings))
    except ConfigurationError as exc:
        _fail(str(exc), 2)
    except ValueError as exc:  # pydantic's ValidationError (a bad setting) is one
        _fail(f"bad setting: {exc}", 2)
    except (MicroHiveError, OSError) as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        pass


def require_routing(agent: MicroAgent) -> None:
    """Refuse to start on a transport without exchanges, rather than fail every publish."""
    transport = agent.broker.transport
    if not transport.capabilities.routing:
        raise ConfigurationError(NO_ROUTING.format(broker=repr(transport)))


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)

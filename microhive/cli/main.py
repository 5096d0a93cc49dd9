"""``microhive run module:Agent ...``: run agents in one process, or one process each."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .. import logs
from ..agent.agent import MicroAgent
from ..agent.plain import target_of
from ..errors import ConfigurationError, MicroHiveError
from ..runner import load_targets, run_agents
from ..settings import RunSettings, load_settings
from ..urls import redact, resolve
from .agents import agents
from .asyncapi import asyncapi
from .console import console
from .declare import declare
from .dlq import dlq
from .jobs import job, jobs
from .queues import queues, tail
from .send import call, send, signal_command


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"microhive: error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="microhive")
def main() -> None:
    """Run micro-agents that talk through a signal bus, a queue broker and schedules."""


@main.command()
@click.argument("targets", nargs=-1)
@click.option("--transport", help="URL for both bus and broker (default memory://).")
@click.option("--bus", help="Signal bus URL (overrides --transport).")
@click.option("--broker", help="Queue broker URL (overrides --transport).")
@click.option("--catalog", multiple=True, help="Catalog JSON file (repeatable).")
@click.option("--config", type=click.Path(dir_okay=False), help="TOML settings file.")
@click.option(
    "--processes/--single-process",
    default=None,
    help="One supervised process per agent, or all agents in this process (the default).",
)
@click.option("--grace-period", type=float, help="Seconds in-flight handlers get at shutdown.")
@click.option("--duration", type=float, help="Stop by itself after this many seconds.")
@click.option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")
@click.option(
    "--heartbeat",
    type=click.FloatRange(min=0),
    help="Seconds between the agents' heartbeats (default 5; 0 turns them off).",
)
@click.option(
    "--metrics",
    metavar="[ADDR:]PORT",
    help="Serve /metrics, /healthz and /readyz over HTTP (on 127.0.0.1 unless ADDR is given).",
)
@click.option(
    "--tracing",
    metavar="otlp|file:PATH",
    help="Trace with OpenTelemetry: export over OTLP/HTTP, or as JSON lines to a file.",
)
def run(
    targets: Sequence[str],
    config: str | None,
    metrics: str | None,
    tracing: str | None,
    **given: Any,
) -> None:
    """Run agent classes given as module:Class (or module for all agents in it).

    Settings come from the options, then MICROHIVE_* environment variables, then --config.
    """
    try:
        settings = load_settings(config, targets=list(targets), **given)
        if settings.processes and metrics is not None:
            raise ConfigurationError(
                "--metrics serves one process: use it with --single-process (one port each)"
            )
        logs.configure(settings.log_level.upper())
        for url, role in ((settings.bus_url, "bus"), (settings.broker_url, "broker")):
            transport = resolve(url, role)  # type: ignore[arg-type]
            if settings.processes and not transport.capabilities.out_of_process:
                raise ConfigurationError(
                    f"--processes needs a transport other processes can reach; the {role} is "
                    f"{redact(url)!r}, which lives inside one process (use redis://, amqp://...)"
                )
        classes = load_targets(settings.targets)
        if settings.processes:
            sys.exit(_supervise(settings, classes, config, tracing))
        asyncio.run(run_agents(classes, settings, metrics=metrics, tracing=tracing))
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except (MicroHiveError, OSError) as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        pass


def _supervise(
    settings: RunSettings,
    classes: Sequence[type[MicroAgent]],
    config: str | None,
    tracing: str | None = None,
) -> int:
    """One child process per agent class. URLs travel in the environment, where other
    users cannot read them (a command line shows in ``ps``)."""
    from .supervisor import Supervisor

    env = {
        **os.environ,
        "MICROHIVE_BUS": settings.bus_url,
        "MICROHIVE_BROKER": settings.broker_url,
    }
    commands = {}
    for cls in classes:
        target = target_of(cls)
        command = [
            sys.executable,
            "-m",
            "microhive",
            "run",
            target,
            "--single-process",
            "--grace-period",
            str(settings.grace_period),
            "--log-level",
            settings.log_level,
        ]
        for catalog in settings.catalog:
            command += ["--catalog", catalog]
        if config is not None:
            command += ["--config", config]
        if settings.duration is not None:
            command += ["--duration", str(settings.duration)]
        command += ["--heartbeat", str(settings.heartbeat)]
        if tracing is not None:
            command += ["--tracing", tracing]
        commands[target] = command
    supervisor = Supervisor(commands, grace_period=settings.grace_period, env=env)
    logging.getLogger("microhive.supervisor").info("supervising %d process(es)", len(commands))
    return asyncio.run(supervisor.run())


main.add_command(asyncapi)
main.add_command(declare)
main.add_command(send)
main.add_command(signal_command)
main.add_command(call)
main.add_command(queues)
main.add_command(tail)
main.add_command(dlq)
main.add_command(agents)
main.add_command(job)
main.add_command(jobs)
main.add_command(console)

if __name__ == "__main__":
    main()

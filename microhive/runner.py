"""Running agent classes in this process until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .agent.agent import MicroAgent
from .agent.plain import TARGET_ATTRIBUTE, tasks_agent, tasks_of
from .broker import QueueBroker
from .bus import SignalBus
from .catalog import Catalog, load_stuff
from .errors import ConfigurationError
from .middleware import Middleware
from .settings import RunSettings
from .tasks.functions import TaskFunction

log = logging.getLogger("microhive.runner")


def load_target(target: str) -> list[type[MicroAgent]]:
    """``module:Class`` → that class; ``module`` → every agent class defined in it, and one
    agent (named as the module) for its plain ``@task`` functions that no class runs;
    ``module:add,mul`` → an agent for those plain tasks (or classes, comma-separated)."""
    module_name, _, names = target.partition(":")
    if not module_name:
        raise ConfigurationError(f"bad target {target!r}: expected module:Class")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # like `python -m`: the current directory imports
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise ConfigurationError(f"cannot import module {module_name!r} ({target})") from None
        raise
    if names:
        classes: list[type[MicroAgent]] = []
        plain: dict[str, TaskFunction[..., Any]] = {}
        for name in names.split(","):
            found = getattr(module, name, None)
            if isinstance(found, TaskFunction):
                plain[name] = found
            elif inspect.isclass(found) and issubclass(found, MicroAgent):
                classes.append(found)
            else:
                raise ConfigurationError(
                    f"{target}: no MicroAgent subclass {name!r} in module (nor a @task function)"
                )
        return classes + _plain_agent(module, plain)
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, MicroAgent)
        and value.__module__ == module.__name__
    ]
    covered = {id(t) for cls in classes for t in tasks_of(cls)}
    plain = {
        name: value
        for name, value in vars(module).items()
        if isinstance(value, TaskFunction)
        and value.__module__ == module.__name__
        and id(value) not in covered
    }
    classes += _plain_agent(module, plain)
    if not classes:
        raise ConfigurationError(
            f"{target}: module defines no MicroAgent subclass (nor a @task function)"
        )
    return classes


def _plain_agent(
    module: ModuleType, plain: dict[str, TaskFunction[..., Any]]
) -> list[type[MicroAgent]]:
    """One agent named as the module for ``plain`` tasks (none for none), that remembers its
    target (``module:add,mul``) so ``--processes`` starts the same agent in its child."""
    if not plain:
        return []
    name = module.__name__.rpartition(".")[2]
    cls = tasks_agent(name, *dict.fromkeys(plain.values()), module=module.__name__)
    setattr(cls, TARGET_ATTRIBUTE, f"{module.__name__}:{','.join(plain)}")
    return [cls]


def load_targets(targets: Sequence[str]) -> list[type[MicroAgent]]:
    if not targets:
        raise ConfigurationError("no agents to run: give module:Class targets")
    return [cls for target in targets for cls in load_target(target)]


def load_catalog(paths: Sequence[str]) -> Catalog:
    catalog = Catalog.empty()
    for path in paths:
        catalog = catalog.merged(load_stuff(path))
    return catalog


async def run_agents(
    classes: Sequence[type[MicroAgent]],
    settings: RunSettings,
    stop: asyncio.Event | None = None,
    *,
    middleware: Iterable[Middleware] = (),
    metrics: str | None = None,
    tracing: str | None = None,
) -> None:
    """Start every agent, wait for ``stop`` (or SIGINT/SIGTERM, or the duration), stop all.

    ``classes`` are listed upstream first: they start last and stop first. ``metrics``
    (``[ADDR:]PORT``) serves /metrics, /healthz and /readyz; ``tracing`` (``otlp`` or
    ``file:PATH``) exports spans (see docs/operations.md).
    """
    from .observability import runtime

    stop = stop or asyncio.Event()
    catalog = load_catalog(settings.catalog)
    watching = runtime.metrics_middleware() if metrics is not None else None
    tracer = (
        runtime.tracing_middleware(
            tracing, settings.bus_url, settings.broker_url, ",".join(c.__name__ for c in classes)
        )
        if tracing is not None
        else None
    )
    middleware = [m for m in (watching, tracer) if m is not None] + list(middleware)
    bus = SignalBus.from_url(settings.bus_url, signals=catalog.signals, middleware=middleware)
    broker = QueueBroker.from_url(settings.broker_url, queues=catalog.queues, middleware=middleware)
    agents = [
        cls(
            bus,
            broker,
            settings=settings.agents.get(cls.__name__, {}),
            grace_period=settings.grace_period,
            heartbeat=settings.heartbeat or None,
        )
        for cls in classes
    ]
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    started: list[MicroAgent] = []
    try:
        async with runtime.serving(metrics, watching, agents, started, bus, broker):
            try:
                await bus.connect()
                await broker.connect()
                # upstream agents are listed first: they start last and stop first, so nothing
                # they send is lost at either end while the agents downstream are not running
                for agent in reversed(agents):
                    await agent.start()
                    started.append(agent)
                log.info("running %d agent(s) on bus %r, broker %r", len(agents), bus, broker)
                if settings.duration is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(settings.duration):
                            await stop.wait()
                else:
                    await stop.wait()
                log.info("stopping")
            finally:
                for agent in reversed(started):
                    try:
                        await agent.stop()
                    except Exception as exc:
                        log.error("%r did not stop cleanly: %s", agent, exc)
                started.clear()
                await bus.close()
                await broker.close()
    finally:
        runtime.shutdown_tracing(tracer)
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signum)

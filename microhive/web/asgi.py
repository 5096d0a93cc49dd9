"""Agents inside an ASGI app (Starlette, FastAPI): started in its lifespan, stopped on shutdown.

::

    from fastapi import FastAPI, Request
    from microhive.web import lifespan

    app = FastAPI(lifespan=lifespan(FeedAgent, transport="redis://127.0.0.1:6379/0"))

    @app.post("/events")
    async def post(request: Request, event: dict) -> dict:
        hive = request.state.hive                       # also app.state.hive
        return {"id": await hive.broker.events.send(event)}

The server runs the lifespan in its own event loop, so the agents share it with the
endpoints: no thread, no second loop. The app starts serving only after every agent
started, and on shutdown (SIGINT/SIGTERM to the server) the agents get their grace period
before the connections close.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from .hive import AgentFactory, WebHive

Lifespan = Callable[[Any], AbstractAsyncContextManager[dict[str, Any]]]


def lifespan(*agents: AgentFactory | WebHive, **options: Any) -> Lifespan:
    """An ASGI lifespan that runs ``agents`` (or one :class:`WebHive` built beforehand) for
    the life of the app. ``options`` are :class:`WebHive`'s (``transport``, ``bus``,
    ``broker``, ``catalog``, ``grace_period``...). The running hive is in the lifespan state
    (``request.state.hive``) and in ``app.state.hive`` where the app has a ``state``.

    To run it next to a lifespan of your own, enter the hive in yours:
    ``async with hive: yield {"hive": hive}``.
    """
    hive = _hive(agents, options)

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[dict[str, Any]]:
        state = getattr(app, "state", None)
        async with hive:
            if state is not None:
                state.hive = hive
            try:
                yield {"hive": hive}
            finally:
                if state is not None:
                    state.hive = None

    return run


def _hive(agents: tuple[AgentFactory | WebHive, ...], options: dict[str, Any]) -> WebHive:
    given = [agent for agent in agents if isinstance(agent, WebHive)]
    if given:
        if len(agents) != 1 or options:
            raise TypeError("lifespan(hive) takes one WebHive and nothing else")
        return given[0]
    factories = [agent for agent in agents if not isinstance(agent, WebHive)]
    return WebHive(*factories, **options)

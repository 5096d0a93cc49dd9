"""Agents in an ASGI app's lifespan: a real Starlette app served by uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from microhive import ConfigurationError, on
from microhive.testing import eventually
from microhive.web import WebHive, lifespan

from ..engines import free_port
from .conftest import JOBS, PING, Echo, Urls, fetch

WAIT = 30.0


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port, lifespan included."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), WAIT)
    if not server.started:
        await task
        raise AssertionError("uvicorn did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT)


async def post_job(request: Request) -> JSONResponse:
    hive: WebHive = request.state.hive
    body = await request.json()
    return JSONResponse({"id": await hive.send(JOBS, {"n": body["n"]}, key=body.get("key"))})


async def ping(request: Request) -> JSONResponse:
    hive: WebHive = request.state.hive
    return JSONResponse(await hive.call(PING, name=request.path_params["name"], timeout=10))


async def recent(request: Request) -> JSONResponse:
    tail = request.app.state.hive.tail(JOBS, last=3, key="k")  # app.state works too
    return JSONResponse([payload["n"] for payload in tail.payloads()])


async def recent_is(base: str, expected: list[int]) -> bool:
    return bool(await fetch(f"{base}/recent") == expected)


def make_app(urls: Urls) -> Starlette:
    routes = [
        Route("/jobs", post_job, methods=["POST"]),
        Route("/ping/{name}", ping),
        Route("/recent", recent),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan(Echo, bus=urls.bus, broker=urls.broker, grace_period=2)
    )


async def test_lifespan_runs_the_agents_while_the_app_serves(urls: Urls) -> None:
    app = make_app(urls)
    async with serving(app) as base:
        hive: WebHive = app.state.hive
        (echo,) = hive.agents
        assert isinstance(echo, Echo) and echo.running
        assert await fetch(f"{base}/ping/ann") == "pong ann"
        for n in range(5):
            await fetch(f"{base}/jobs", {"n": n, "key": "k" if n % 2 else "other"})
        await eventually(lambda: sorted(echo.done) == [0, 1, 2, 3, 4], WAIT)
        # a view fills in the background: the first answer may come before the history
        await eventually(lambda: recent_is(base, [1, 3]), WAIT)
        await fetch(f"{base}/jobs", {"n": 5, "key": "k"})
        # the tail view follows new messages of its key
        await eventually(lambda: hive.tail(JOBS, last=3, key="k").payloads()[-1] == {"n": 5}, WAIT)
        assert await recent_is(base, [1, 3, 5])
    assert not echo.running  # stopped on shutdown
    assert app.state.hive is None
    with pytest.raises(RuntimeError, match="not running"):
        hive.broker  # noqa: B018 - the connections are closed


class Broken(Echo):
    @on("pre_start")
    async def fail(self) -> None:
        raise ConnectionError("no database")


async def test_an_agent_that_cannot_start_stops_the_whole_start() -> None:
    hive = WebHive(Echo, Broken, transport="memory://mhweb_broken")
    with pytest.raises(ConnectionError, match="no database"):
        await hive.start()
    assert not hive.running and hive.agents == []  # Echo was started, then stopped again


async def test_bad_arguments_say_what_is_wrong() -> None:
    hive = WebHive(Echo, transport="memory://mhweb_args")
    with pytest.raises(TypeError, match="one WebHive"):
        lifespan(hive, transport="memory://")
    with pytest.raises(RuntimeError, match="not running"):
        hive.tail(JOBS, last=1)
    with pytest.raises(ConfigurationError, match=r"scheme|transport"):
        await WebHive(Echo, transport="nope://x").start()
    async with hive:
        with pytest.raises(ConfigurationError, match="last"):
            hive.tail(JOBS, last=-1)
        with pytest.raises(ConfigurationError, match="last >= 1"):
            hive.tail(JOBS, last=0)


async def test_fastapi_takes_the_lifespan_too() -> None:
    from fastapi import FastAPI

    app = FastAPI(lifespan=lifespan(Echo, transport="memory://mhweb_fastapi", grace_period=1))

    @app.post("/jobs")
    async def post(request: Request, job: dict[str, int]) -> str:
        return await request.state.hive.send(JOBS, job)  # type: ignore[no-any-return]

    async with serving(app) as base:
        (echo,) = app.state.hive.agents
        message_id = await fetch(f"{base}/jobs", {"n": 7})
        assert isinstance(message_id, str) and message_id
        await eventually(lambda: echo.done == [7], WAIT)
    assert not echo.running

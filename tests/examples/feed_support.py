"""What the feed example's tests share: serving an app in the test's loop, a database of the
test's own (SQLite file or a fresh PostgreSQL database), and waiting on the feed's JSON."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn

from microhive.envelope import new_id

from ..engines import free_port, reachable, unavailable
from ..processes import until

POSTGRES_URL = os.environ.get(
    "MICROHIVE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
"""A database where the tests may create (and drop) databases of their own."""

HIRES = [
    {"employee": "Ann", "department": "R&D", "position": "engineer"},
    {"employee": "Bob", "department": "Sales", "position": "manager"},
    {"employee": "Carol", "department": "R&D", "position": "designer"},
]


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Run ``app`` (lifespan and all) with uvicorn in this event loop; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())

    def started() -> bool:
        if task.done():
            raise AssertionError(f"the app did not start: {task.exception() or 'it exited'}")
        return bool(server.started)

    await until(started, 30, "the app to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (dropped after it); its URL."""
    import asyncpg  # type: ignore[import-untyped]

    parts = urlsplit(POSTGRES_URL)
    if not reachable(parts.hostname or "127.0.0.1", parts.port or 5432):
        unavailable(
            f"PostgreSQL is not reachable at {parts.netloc}: set MICROHIVE_TEST_POSTGRES_URL"
        )
    name = f"feed_{new_id()[:12]}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield parts._replace(path=f"/{name}").geturl()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The feed's database, on SQLite (the default) and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'feed.db'}"
        return
    async with postgres_database() as url:
        yield url


async def feed(client: httpx.AsyncClient, base: str, limit: int = 500) -> dict[str, Any]:
    response = await client.get(f"{base}/api/feed", params={"limit": limit})
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


async def feed_until(
    client: httpx.AsyncClient,
    base: str,
    condition: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30,
) -> dict[str, Any]:
    """The feed's JSON once ``condition`` holds for it."""

    async def check() -> dict[str, Any] | None:
        document = await feed(client, base)
        return document if condition(document) else None

    found: dict[str, Any] = await until(check, timeout, what)
    return found


async def dead_until(
    client: httpx.AsyncClient, base: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """The admin's dead letters once there are ``count`` of them."""

    seen: list[dict[str, Any]] = []

    async def check() -> tuple[list[dict[str, Any]]] | None:
        letters: list[dict[str, Any]] = (await client.get(f"{base}/api/dead")).json()
        seen[:] = letters
        return (letters,) if len(letters) == count else None  # a tuple: true even if empty

    try:
        (found,) = await until(check, timeout, f"{count} dead letter(s)")
        assert isinstance(found, list)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the dead letters: {seen}") from None
    return found


def texts(document: dict[str, Any]) -> list[str]:
    return [item["text"] for item in document["items"]]

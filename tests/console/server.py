"""The console served in the test's own event loop (so a memory:// hive is shared with the
test's agents), on a free loopback port, with an HTTP client for it."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn

from microhive.console import Console
from microhive.testing import eventually
from tests.engines import free_port


@asynccontextmanager
async def serving(app: Console) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` on uvicorn until the block ends; yields a client whose base URL is it."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
    )
    task = asyncio.get_running_loop().create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=30)
        assert server.started, "the console did not start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        done, _ = await asyncio.wait([task], timeout=30)
        if not done:  # say where the shutdown hangs before it is cancelled
            stacks = io.StringIO()
            for each in asyncio.all_tasks():
                each.print_stack(file=stacks)
            task.cancel()
            raise AssertionError(f"the console did not stop; its tasks:\n{stacks.getvalue()}")


async def events(client: httpx.AsyncClient, count: int, **headers: str) -> list[tuple[str, Any]]:
    """The first ``count`` server-sent events of ``api/events`` as (event, data)."""
    found: list[tuple[str, Any]] = []
    async with client.stream("GET", "/api/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        name, data = "message", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                name = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                data += line.partition(":")[2].strip()
            elif not line and data:
                found.append((name, json.loads(data)))
                name, data = "message", ""
                if len(found) >= count:
                    break
    return found

"""Serving the console with uvicorn, for ``microhive console``."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from types import FrameType

import uvicorn

from ..errors import MicroHiveError
from .app import Console


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM with exit 0 like ``microhive run``
    (uvicorn raises the signal again once stopped, which ends the process by it)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        self.should_exit = True


async def serve(app: Console, bind: str, port: int, announce: Callable[[str], None]) -> None:
    """Serve ``app`` until SIGINT/SIGTERM; ``announce`` gets the URL once it listens (with
    the port the system chose for ``port`` 0)."""
    config = uvicorn.Config(
        app, host=bind, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
    )
    server = _Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
        await asyncio.sleep(0.05)
    if server.started:
        sockets = [s for listener in server.servers for s in listener.sockets]
        host, bound = sockets[0].getsockname()[:2]
        announce(f"http://{host if ':' not in host else f'[{host}]'}:{bound}/")
    try:
        await task
    except SystemExit:  # uvicorn's way to say startup failed (it logged why)
        raise MicroHiveError(f"the console could not start on {bind}:{port}") from None

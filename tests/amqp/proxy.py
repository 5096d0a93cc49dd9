"""A TCP proxy to a shared server (RabbitMQ, or Redis for a result store) that a test can cut,
restore or hold: a lost connection, a server that refuses new ones, one that stops
answering, without touching the server itself."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit, urlunsplit


class Proxy:
    """Listens on a free loopback port and pipes every connection to ``upstream``'s server.

    :meth:`cut` closes every connection and stops listening (clients see the server gone);
    :meth:`restore` listens again on the same port.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = upstream
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._answering = asyncio.Event()  # cleared by hold(): the server's bytes wait
        self._answering.set()

    @property
    def url(self) -> str:
        """``upstream`` with the proxy's address instead of the server's."""
        parts = urlsplit(self.upstream)
        credentials = parts.netloc.rpartition("@")[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def hold(self) -> None:
        """Keep every connection open but pass nothing from the server to its clients (no
        confirm, no delivery, no heartbeat) until :meth:`release`."""
        self._answering.clear()

    def release(self) -> None:
        self._answering.set()

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        for source, sink, gate in ((reader, up_writer, None), (up_reader, writer, self._answering)):
            pipe = asyncio.ensure_future(self._pipe(source, sink, gate))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        gate: asyncio.Event | None = None,
    ) -> None:
        try:
            while data := await source.read(65536):
                if gate is not None:
                    await gate.wait()
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()
            self._writers.discard(sink)
            with contextlib.suppress(Exception):
                sink.close()

"""The process's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz``.

A small asyncio server rather than ``prometheus_client.start_http_server``: readiness reads
the agents' and connections' state, which lives on the event loop's thread, and a server on
that loop reads it without locks or a second thread; it also stops with the loop. It speaks
just enough HTTP/1.1 for probes and scrapers: one GET (or HEAD) per connection, answered with
``Content-Length`` and ``Connection: close``; anything else gets a 4xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..errors import ConfigurationError

Problems = Callable[[], Mapping[str, str]]
"""What is not ready yet, by part ("bus", "agent Worker"...); empty when all is."""

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}
HEAD_LIMIT = 16 * 1024
READ_TIMEOUT = 10.0


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``ADDR:PORT`` or ``[IPv6]:PORT`` → (host, port); loopback when no address."""
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535 or (sep and not host) or (":" in host and not bracketed):
        raise ConfigurationError(
            f"bad metrics address {text!r}: expected [ADDR:]PORT (an IPv6 ADDR in brackets)"
        )
    host = host or "127.0.0.1"
    return host, number


class ObservabilityServer:
    """Serves a registry's metrics and the process's health until closed."""

    def __init__(
        self,
        registry: CollectorRegistry,
        problems: Problems,
        host: str = "127.0.0.1",
        port: int = 9100,
    ) -> None:
        self.registry = registry
        self.problems = problems
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; ``port`` 0 picks a free one (then :attr:`port` says which)."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=HEAD_LIMIT
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                status, body, kind, method = 431, b"request head too large\n", "text/plain", "GET"
            except TimeoutError:
                status, body, kind, method = 408, b"request timed out\n", "text/plain", "GET"
            except asyncio.IncompleteReadError:
                return  # the client went away
            else:
                method, status, body, kind = self._answer(head)
            writer.write(_response(status, kind, body, head_only=method == "HEAD"))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, int, bytes, str]:
        """(method, status, body, content type) for one request head."""
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "GET", 400, b"bad request line\n", "text/plain"
        method, path = parts[0], parts[1].partition("?")[0]
        if method not in ("GET", "HEAD"):
            return method, 405, b"GET or HEAD only\n", "text/plain"
        if path == "/metrics":
            return method, 200, generate_latest(self.registry), CONTENT_TYPE_LATEST
        if path == "/healthz":
            return method, 200, b'{"status": "ok"}\n', "application/json"
        if path == "/readyz":
            problems = dict(self.problems())
            document = {"ready": not problems, "waiting": problems}
            body = json.dumps(document).encode() + b"\n"
            return method, 503 if problems else 200, body, "application/json"
        return method, 404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain"


def _response(status: int, kind: str, body: bytes, *, head_only: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        f"Content-Type: {kind}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n" + ("Allow: GET, HEAD\r\n" if status == 405 else "") + "\r\n"
    )
    return head.encode("latin-1") + (b"" if head_only else body)

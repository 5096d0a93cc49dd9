"""What microhive's Redis transport relies on in redis-py and hiredis beyond their documented
API, checked without a Redis server (a fake server on loopback answers ``+OK``).

microhive/transports/redis/dial.py lets redis-py open and authenticate a connection, then
takes its private asyncio streams (``_reader``/``_writer``) and speaks RESP2 itself with
hiredis. pyproject.toml bounds redis-py below the next major version; when raising that
bound, run these first: a failure says what to check.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis
from redis import exceptions
from redis.asyncio import connection

UPGRADE = (
    "redis-py {version} changed under microhive: check microhive/transports/redis/{module} "
    "({what}) before raising the bound in pyproject.toml"
)


def upgrade(module: str, what: str) -> str:
    return UPGRADE.format(version=redis.__version__, module=module, what=what)


async def _answer_ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A fake server: ``+OK`` to every command (redis-py's handshake only needs that)."""
    parser = hiredis.Reader()
    try:
        while data := await reader.read(4096):
            parser.feed(data)
            while parser.gets() is not False:
                writer.write(b"+OK\r\n")
    finally:
        writer.close()


@pytest.fixture
async def fake_tcp() -> AsyncIterator[int]:
    server = await asyncio.start_server(_answer_ok, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
async def fake_unix(tmp_path: Path) -> AsyncIterator[str]:
    path = str(tmp_path / "fake.sock")
    server = await asyncio.start_unix_server(_answer_ok, path)
    async with server:
        yield path


def test_parse_url_gives_connection_keywords() -> None:
    """options.py passes parse_url()'s result to the connection class as keywords."""
    where = upgrade("options.py", "redis.asyncio.connection.parse_url")
    tcp = connection.parse_url("rediss://app:pw@host:6380/2?socket_connect_timeout=2")
    assert tcp["connection_class"] is connection.SSLConnection, where
    assert (tcp["host"], tcp["port"], tcp["db"]) == ("host", 6380, 2), where
    assert (tcp["username"], tcp["password"], tcp["socket_connect_timeout"]) == ("app", "pw", 2)
    unix = connection.parse_url("unix://:pw@/run/redis.sock?db=3")
    assert unix["connection_class"] is connection.UnixDomainSocketConnection, where
    assert (unix["path"], unix["db"], unix["password"]) == ("/run/redis.sock", 3, "pw"), where


def test_connection_classes_take_the_keywords_microhive_sets() -> None:
    """options.py adds socket_timeout=None and protocol=2 (RESP2: what the link parses)."""
    for cls in (connection.Connection, connection.SSLConnection):
        conn = cls(host="h", port=1, socket_timeout=None, protocol=2, socket_keepalive=True)
        assert conn.host == "h", upgrade("options.py", f"{cls.__name__}(host=...)")
    conn = connection.UnixDomainSocketConnection(path="/x", socket_timeout=None, protocol=2)
    assert conn.path == "/x", upgrade("options.py", "UnixDomainSocketConnection(path=...)")


async def test_after_connect_the_tcp_streams_are_reader_and_writer(fake_tcp: int) -> None:
    conn = connection.Connection(host="127.0.0.1", port=fake_tcp, protocol=2, socket_timeout=None)
    await _streams_are_ours(conn)


async def test_after_connect_the_unix_streams_are_reader_and_writer(fake_unix: str) -> None:
    conn = connection.UnixDomainSocketConnection(path=fake_unix, protocol=2, socket_timeout=None)
    await _streams_are_ours(conn)


async def _streams_are_ours(conn: Any) -> None:
    """dial.py takes ``conn._reader``/``conn._writer`` after ``await conn.connect()`` and
    writes and reads them directly; ``conn.disconnect(nowait=True)`` closes them."""
    where = upgrade("dial.py", "Connection._reader / ._writer after connect()")
    await conn.connect()
    try:
        reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
        assert isinstance(reader, asyncio.StreamReader), where
        assert isinstance(writer, asyncio.StreamWriter), where
        writer.write(hiredis.pack_command((b"PING",)))
        assert await reader.readline() == b"+OK\r\n", where + ": the stream is not the socket's"
    finally:
        await conn.disconnect(nowait=True)
    closed = upgrade("dial.py", "disconnect(nowait=True) keeps the streams")
    assert getattr(conn, "_writer", 0) is None, closed


def test_disconnect_takes_nowait() -> None:
    parameters = inspect.signature(connection.Connection.disconnect).parameters
    assert "nowait" in parameters, upgrade("dial.py", "Connection.disconnect(nowait=...)")


def test_the_exceptions_dial_maps() -> None:
    """dial.py turns these into LinkDown (connection problems) or AuthError (credentials)."""
    where = upgrade("dial.py", "redis.exceptions")
    assert issubclass(exceptions.ConnectionError, exceptions.RedisError), where
    assert issubclass(exceptions.TimeoutError, exceptions.RedisError), where
    assert issubclass(exceptions.AuthenticationError, exceptions.RedisError), where
    assert hasattr(exceptions, "AuthenticationError"), where


def test_hiredis_packs_and_parses_resp2() -> None:
    """link.py and dial.py pack commands with ``hiredis.pack_command`` and parse replies with
    ``hiredis.Reader(replyError=...)``: ``gets()`` is False until a reply is complete."""
    where = "hiredis changed under microhive: check microhive/transports/redis/link.py"
    assert hiredis.pack_command((b"XACK", "s", 1)) == b"*3\r\n$4\r\nXACK\r\n$1\r\ns\r\n$1\r\n1\r\n"

    class Failed(Exception):
        pass

    parser = hiredis.Reader(replyError=Failed)
    parser.feed(b"*2\r\n$1\r\na\r\n")
    assert parser.gets() is False, where
    parser.feed(b":7\r\n-NOGROUP no such key\r\n")
    assert parser.gets() == [b"a", 7], where
    error = parser.gets()
    assert isinstance(error, Failed) and str(error) == "NOGROUP no such key", where

"""Opening one connection: redis-py's handshake, then the socket is ours.

redis-py opens the connection (TCP, TLS or a Unix socket; AUTH with an ACL user, SELECT,
CLIENT SETNAME) and :func:`dial` takes its asyncio streams (``_reader``/``_writer``, private
attributes) to speak RESP2 itself. That borrowing lives here and nowhere else;
tests/canary/test_redis_internals.py checks every piece of redis-py it relies on, so an
upgrade that moves them fails there first. ``redis+sentinel://`` asks the Sentinels for the
master before each connection, so a reconnect after a failover finds the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import hiredis

from ...errors import TransportError
from ..links import LinkDown
from .options import RedisOptions


class ReplyError(TransportError):
    """An error reply from Redis (``-ERR ...``, ``-NOPERM ...``); the text is the server's."""

    @property
    def code(self) -> str:
        return str(self).split(" ", 1)[0]


class AuthError(TransportError):
    """Redis refused the credentials or the ACL user lacks a permission."""


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in the Redis protocol (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(args)
    return packed


@dataclass(slots=True)
class Dialed:
    """A connection after redis-py's handshake: its streams are ours from now on."""

    conn: Any  # redis-py's connection: kept to disconnect it
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    client_id: int  # CLIENT ID, -1 when the ACL user may not ask


async def dial(options: RedisOptions, describe: Any, timeout: float) -> Dialed:
    """One connection attempt: :class:`LinkDown` or :class:`AuthError` when it fails.
    ``describe(what, exc)`` makes the (redacted) message."""
    from redis import exceptions as redis_errors

    kwargs = dict(options.connection)
    connection_class = kwargs.pop("connection_class")
    conn: Any = None
    try:
        if options.sentinels:
            kwargs["host"], kwargs["port"] = await master_address(options, timeout)
        conn = connection_class(**kwargs)
        await conn.connect()
        writer: asyncio.StreamWriter = conn._writer
        reader: asyncio.StreamReader = conn._reader
        client_id = await _client_id(reader, writer, timeout)
        if options.sentinels:
            await _expect_master(reader, writer, timeout)
    except ReplyError as exc:
        await disconnect(conn)
        if exc.code in ("NOAUTH", "WRONGPASS", "NOPERM"):
            raise AuthError(describe("cannot authenticate to", exc)) from None
        raise LinkDown(describe("cannot connect to", exc)) from None
    except _auth_errors(redis_errors) as exc:
        await disconnect(conn)
        raise AuthError(describe("cannot authenticate to", exc)) from None
    except (redis_errors.RedisError, OSError, EOFError, TimeoutError, LinkDown) as exc:
        await disconnect(conn)
        raise LinkDown(describe("cannot connect to", exc)) from None
    except BaseException:
        await disconnect(conn)
        raise
    return Dialed(conn, reader, writer, client_id)


async def disconnect(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.disconnect(nowait=True)


async def master_address(options: RedisOptions, timeout: float) -> tuple[str, int]:
    """Ask each Sentinel in turn for the master's address (the first that knows wins)."""
    problems = []
    for host, port in options.sentinels:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    reply = await _ask(
                        reader,
                        writer,
                        (b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", options.master),
                    )
                finally:
                    writer.close()
        except (OSError, EOFError, TimeoutError, ReplyError) as exc:
            problems.append(f"{host}:{port}: {exc or type(exc).__name__}")
            continue
        if isinstance(reply, list) and len(reply) == 2:
            return reply[0].decode(), int(reply[1])
        problems.append(f"{host}:{port}: does not know master {options.master!r}")
    raise LinkDown(f"no Sentinel named the master ({'; '.join(problems)})")


async def _expect_master(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
) -> None:
    """A Sentinel's answer may be stale for a moment during a failover: check ROLE."""
    async with asyncio.timeout(timeout):
        role = await _ask(reader, writer, (b"ROLE",))
    if not role or role[0] != b"master":
        raise LinkDown(f"the server Sentinel named is a {role[0].decode()}, not the master")


async def _client_id(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
) -> int:
    """``CLIENT ID`` on the fresh connection (to unblock its blocking reads later)."""
    try:
        async with asyncio.timeout(timeout):
            reply = await _ask(reader, writer, (b"CLIENT", b"ID"))
    except ReplyError as exc:
        if exc.code == "NOPERM":  # an ACL user without CLIENT ID: reads just time out
            return -1
        raise
    return int(reply)


async def _ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, command: tuple[Any, ...]
) -> Any:
    """One command and its reply, before the link's reader runs."""
    parser = hiredis.Reader(replyError=ReplyError)
    writer.write(pack(command))
    while True:
        reply = parser.gets()
        if reply is not False:
            break
        data = await reader.read(4096)
        if not data:
            raise EOFError("connection closed during the handshake")
        parser.feed(data)
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def _auth_errors(errors: Any) -> tuple[type[BaseException], ...]:
    """redis-py's exceptions for refused credentials (the set grew over its versions)."""
    names = ("AuthenticationError", "AuthorizationError", "NoPermissionError")
    return tuple(getattr(errors, name) for name in names if hasattr(errors, name))

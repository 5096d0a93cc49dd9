"""Commands on a broker's shared link, through outages.

Everything a broker, its consumers and its movers send (besides blocking reads) goes through
one :class:`Commands`: it knows the broker's link (None while closed) and how long to keep
trying (``retry_timeout``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ...errors import TransportError
from ..links import RECONNECT, LinkDown
from .link import Link, ReplyError
from .options import RedisOptions
from .scripts import Script

T = TypeVar("T")


class Commands:
    def __init__(self, options: RedisOptions, owner: str) -> None:
        self.options = options
        self.owner = owner  # the broker's repr, for errors
        self.link: Link | None = None  # set while the broker is connected

    @property
    def up(self) -> bool:
        return self.link is not None and self.link.up

    def require(self) -> Link:
        link = self.link
        if link is None:
            raise TransportError(f"{self.owner} is not connected")
        return link

    async def run(self, *args: Any) -> Any:
        """One command; through an outage it is retried until ``retry_timeout``.

        A command whose reply was lost may have run: an XADD retried then is stored twice
        (at least once).
        """
        link = self.require()
        if link.up:
            try:
                return await link.send(*args)
            except LinkDown:
                pass
        return await self.retrying(lambda: link.send(*args))

    async def retrying(self, attempt: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``attempt(*args)`` until it gets through the link, up to ``retry_timeout``."""
        link = self.require()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.retry_timeout
        failures = 0
        while True:
            try:
                await link.ensure(deadline)
                return await attempt(*args)
            except LinkDown:
                failures += 1
                if link.closed or loop.time() >= deadline:
                    raise
                await asyncio.sleep(min(RECONNECT.delay(failures), deadline - loop.time()))

    async def script(self, script: Script, keys: tuple[Any, ...], args: tuple[Any, ...]) -> Any:
        """Run ``script`` (EVALSHA, EVAL when the server lost it), retried through outages."""
        try:
            return await self.run(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await self.run(b"EVAL", script.source, len(keys), *keys, *args)

    async def script_once(
        self, script: Script, keys: tuple[Any, ...], args: tuple[Any, ...]
    ) -> Any:
        """Run ``script`` once; :class:`LinkDown` when the connection is down."""
        link = self.require()
        try:
            return await link.send(b"EVALSHA", script.sha, len(keys), *keys, *args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        return await link.send(b"EVAL", script.source, len(keys), *keys, *args)

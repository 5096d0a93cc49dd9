"""What buses and brokers share: connect once, close once, ``async with``."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from types import TracebackType
from typing import TYPE_CHECKING, Self

from . import linkevents

if TYPE_CHECKING:
    from .middleware import Hooks


class Connection(ABC):
    """Connect once (concurrent first calls wait for the same attempt) and close once."""

    _connected: bool = False
    _connecting: asyncio.Lock | None = None
    hooks: Hooks  # the middleware's hooks (set by SignalBus and QueueBroker)

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Connect; later calls return at once."""
        if self._connected:
            return
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if not self._connected:
                await self._connect()
                self._connected = True
                for hook in self.hooks.linked:  # link events while connected
                    linkevents.watch(hook)

    async def close(self) -> None:
        """Close the connection; a second call does nothing."""
        if not self._connected:
            return
        self._connected = False
        for hook in self.hooks.linked:
            linkevents.unwatch(hook)
        self._before_close()
        await self._close()

    def _before_close(self) -> None:
        """Called as closing begins, before the transport closes (fail what waits on it)."""
        return None

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @abstractmethod
    async def _connect(self) -> None:
        """Open connections (and, for a bus, start listening on its inbox)."""

    @abstractmethod
    async def _close(self) -> None:
        """Close connections."""

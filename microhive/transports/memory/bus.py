"""Signals and call replies inside one process: a publish is a direct hand-over."""

from __future__ import annotations

from typing import Any

from ...bus import SignalBus
from ...capabilities import Capabilities
from .hive import Hive, hive_for


class MemoryBus(SignalBus):
    """``memory://[name]``: signals reach every bus of the same hive on this event loop."""

    capabilities = Capabilities(out_of_process=False, durable=False)

    def __init__(self, url: str = "memory://", *, hive: Hive | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._given_hive = hive
        self._hive: Hive | None = None

    @property
    def hive(self) -> Hive:
        if self._hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        return self._hive

    async def _connect(self) -> None:
        self._hive = self._given_hive or hive_for(self.url)
        self._hive.inboxes[self.inbox] = self

    async def _close(self) -> None:
        hive = self.hive
        hive.inboxes.pop(self.inbox, None)
        for buses in hive.listeners.values():
            buses.discard(self)
        self._hive = None

    async def _publish(self, channel: str, data: bytes) -> None:
        hive = self._hive
        if hive is None:
            raise RuntimeError(f"{self!r} is not connected")
        for bus in tuple(hive.listeners.get(channel, ())):
            bus._deliver(channel, data)

    async def _send_direct(self, address: str, data: bytes) -> None:
        bus = self.hive.inboxes.get(address)
        if bus is not None:  # a caller that is gone no longer waits for its answer
            bus._deliver_reply(data)

    async def _subscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self.hive.listeners.setdefault(channel, set()).add(self)

    async def _unsubscribe(self, channels: list[str]) -> None:
        for channel in channels:
            self.hive.listeners.get(channel, set()).discard(self)

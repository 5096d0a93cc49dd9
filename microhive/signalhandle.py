"""``bus.<signal>``: one signal of a bus, to send, call or gather."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .declarations import Signal
from .replies import Reply

if TYPE_CHECKING:
    from .bus import SignalBus


class SignalHandle:
    """``bus.<signal>``: send, call or gather one signal."""

    __slots__ = ("bus", "sender", "signal")

    def __init__(self, bus: SignalBus, signal: Signal, sender: str = "") -> None:
        self.bus = bus
        self.signal = signal
        self.sender = sender

    async def send(self, sender: str | None = None, /, **kwargs: Any) -> None:
        """Broadcast the signal; ``sender`` defaults to the agent whose ``self.bus`` this is."""
        await self.bus.send(self.signal, self.sender if sender is None else sender, **kwargs)

    async def call(
        self, sender: str | None = None, /, *, timeout: float = 60, **kwargs: Any
    ) -> Any:
        return await self.bus.call(
            self.signal, self.sender if sender is None else sender, timeout=timeout, **kwargs
        )

    async def gather(
        self,
        sender: str | None = None,
        /,
        *,
        timeout: float = 1,
        expect: int | None = None,
        **kwargs: Any,
    ) -> list[Reply]:
        return await self.bus.gather(
            self.signal,
            self.sender if sender is None else sender,
            timeout=timeout,
            expect=expect,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"<SignalHandle {self.signal.name!r} on {self.bus!r}>"

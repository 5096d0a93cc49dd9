"""``self.bus`` and ``self.broker`` of an agent: the transport seen through the agent's catalog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..broker import QueueBroker, QueueHandle
from ..bus import SignalBus, SignalHandle
from ..declarations import Exchange, Namespace, Queue, Signal
from ..errors import ConfigurationError


class BusView:
    """Signal handles by name: ``self.bus.user_enter.send('user_agent', name=...)``."""

    __slots__ = ("_agent", "_bus", "_signals")

    def __init__(self, bus: SignalBus | None, signals: Namespace[Signal], agent: str) -> None:
        self._bus = bus
        self._signals = signals
        self._agent = agent

    @property
    def transport(self) -> SignalBus:
        if self._bus is None:
            raise ConfigurationError(f"{self._agent} was created without a bus")
        return self._bus

    @property
    def signals(self) -> Namespace[Signal]:
        return self._signals

    def signal(self, signal: Signal | str) -> SignalHandle:
        resolved = signal if isinstance(signal, Signal) else self._signals[signal]
        return SignalHandle(self.transport, resolved)

    def __getattr__(self, name: str) -> SignalHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.signal(name)


class BrokerView:
    """Queue handles by name: ``self.broker.email.send({...})``."""

    __slots__ = ("_agent", "_broker", "_queues")

    def __init__(self, broker: QueueBroker | None, queues: Namespace[Queue], agent: str) -> None:
        self._broker = broker
        self._queues = queues
        self._agent = agent

    @property
    def transport(self) -> QueueBroker:
        if self._broker is None:
            raise ConfigurationError(f"{self._agent} was created without a broker")
        return self._broker

    @property
    def queues(self) -> Namespace[Queue]:
        return self._queues

    def queue(self, queue: Queue | str) -> QueueHandle:
        resolved = queue if isinstance(queue, Queue) else self._queues[queue]
        return QueueHandle(self.transport, resolved, self._agent)

    async def publish(
        self,
        exchange: Exchange | str,
        payload: Any,
        *,
        routing_key: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Publish to an exchange (transports with routing); the sender is this agent."""
        return await self.transport.publish(
            exchange,
            payload,
            routing_key=routing_key,
            headers=headers,
            sender=self._agent,
            queues=self._queues.values(),
        )

    def __getattr__(self, name: str) -> QueueHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.queue(name)

"""``self.bus`` and ``self.broker`` of an agent: the transport seen through the agent's catalog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..broker import QueueBroker, QueueHandle
from ..bus import SignalBus, SignalHandle
from ..declarations import Exchange, Namespace, Queue, Signal, lookup
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..tasks.job import Job


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
        """A handle whose sends, calls and gathers come from this agent unless told otherwise."""
        bus = self.transport
        if isinstance(signal, Signal):
            resolved = signal
        else:
            resolved = lookup("signal", signal, self._signals, bus.registry)
        return SignalHandle(bus, resolved, self._agent)

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
        """A handle for a declared queue, or (a plain name) an existing undeclared one."""
        return self._handle(queue, undeclared=True)

    def _handle(self, queue: Queue | str, *, undeclared: bool = False) -> QueueHandle:
        broker = self.transport
        if isinstance(queue, Queue):
            resolved = queue
        elif queue in self._queues:
            resolved = self._queues[queue]
        else:
            resolved = broker._resolve(queue, undeclared=undeclared)
        return QueueHandle(broker, resolved, self._agent)

    async def send(
        self,
        queue: Queue | str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """``self.broker.send(queue, payload)``: enqueue, with this agent as the sender."""
        return await self._handle(queue, undeclared=True).send(
            payload, key=key, delay=delay, headers=headers
        )

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

    async def submit(self, target: Any, **options: Any) -> Job[Any]:
        """``self.broker.submit(chain(...))``: as QueueBroker.submit, from this agent."""
        return await self.transport.submit(target, sender=self._agent, **options)

    def job(self, job_id: str) -> Job[Any]:
        return self.transport.job(job_id)

    def __getattr__(self, name: str) -> QueueHandle:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._handle(name)

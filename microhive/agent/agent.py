"""MicroAgent: an autonomous service that talks only to its bus, its broker and its schedule."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
from collections.abc import Coroutine, Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Self

from ..broker import QueueBroker
from ..bus import SignalBus, Subscription
from ..catalog import Catalog
from ..declarations import Namespace, Queue
from ..envelope import Envelope, new_id
from ..errors import ConfigurationError
from ..logs import AgentLogger, log_context
from ..middleware import Counter, Hooks, Middleware, chain, counters, notify
from .batches import process_batch
from .dispatch import (
    cancelled_from_outside,
    describe,
    start_receiver,
)
from .handlers import Handler, Handlers, collect
from .heartbeat import DEFAULT_INTERVAL, heartbeat_loop
from .scheduled import job_runner
from .schedules import cron_loop, periodic_loop
from .single import is_single, lease_source, single_loop
from .specs import ConsumerSpec, CronSpec, PeriodicSpec, ReceiverSpec
from .views import BrokerView, BusView
from .watched import counted_once, observed_receiver, process, process_counted
from .workers import ReceiverPool, consumer_workers


class MicroAgent:
    """Subclass it, decorate methods with ``@receiver``, ``@consumer``, ``@periodic``,
    ``@cron`` and ``@on``, then ``await agent.start()`` (or ``async with agent:``).

    ``catalog`` (a class attribute) declares signals and queues the agent sends without
    receiving them; the bus's and broker's own catalogs are used too.
    """

    catalog: ClassVar[Catalog | None] = None
    handlers: ClassVar[Handlers] = Handlers()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handlers = collect(cls)

    def __init__(
        self,
        bus: SignalBus | None = None,
        broker: QueueBroker | None = None,
        *,
        settings: Mapping[str, Any] | None = None,
        name: str | None = None,
        grace_period: float = 30.0,
        logger: logging.Logger | None = None,
        middleware: Iterable[Middleware] = (),
        heartbeat: float | None = DEFAULT_INTERVAL,
    ) -> None:
        cls = type(self)
        handlers = cls.handlers
        if handlers.receivers and bus is None:
            names = ", ".join(h.name for h in handlers.receivers)
            raise ConfigurationError(f"{cls.__name__} has receivers ({names}) but no bus was given")
        if handlers.consumers and broker is None:
            names = ", ".join(h.name for h in handlers.consumers)
            raise ConfigurationError(
                f"{cls.__name__} has consumers ({names}) but no broker was given"
            )
        self.name = name or cls.__name__
        self.instance_id = f"{self.name}.{new_id()[:8]}"
        self.settings: Mapping[str, Any] = settings or {}
        self.grace_period = grace_period
        self.heartbeat = heartbeat if heartbeat and bus is not None else None
        """Seconds between heartbeats (agent/heartbeat.py); None: no heartbeat."""
        self.log = AgentLogger(
            logger or logging.getLogger(f"microhive.agent.{self.name}"), self.name
        )
        catalog = cls.catalog or Catalog.empty()
        signals = catalog.signals.merge(handlers.signals)
        queues: Namespace[Queue] = catalog.queues.merge(
            [h.spec.queue for h in handlers.consumers if isinstance(h.spec, ConsumerSpec)]
        )
        if bus is not None:
            signals = bus.signals.merge(signals)
        if broker is not None:
            queues = broker.queues.merge(queues)
        self.bus = BusView(bus, signals, self.name)
        self.broker = BrokerView(broker, queues, self.name)
        self._bus = bus
        self._broker = broker
        self._middleware = chain(
            bus.middleware if bus is not None else (),
            broker.middleware if broker is not None else (),
            middleware,
        )
        self._hooks = Hooks(self._middleware)
        self._counted: dict[tuple[str, str, str], tuple[Counter, ...]] = {}
        self._by_signal: dict[str, list[Handler]] = {}
        for handler in handlers.receivers:
            assert isinstance(handler.spec, ReceiverSpec)
            for signal in handler.spec.signals:
                self._by_signal.setdefault(signal.name, []).append(handler)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._receivers: ReceiverPool | None = None
        self._consumers: list[Any] = []
        self._subscription: Subscription | None = None
        self._running = False
        self._lease_source = lease_source(self.name, handlers.schedules, broker, bus)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.instance_id}>"

    @property
    def running(self) -> bool:
        return self._running

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, run ``pre_start`` hooks, bind every handler, run ``post_start`` hooks.

        Returns once signals are subscribed, consumers are consuming and schedules run.
        """
        if self._running:
            raise RuntimeError(f"{self!r} is already running")
        with log_context(agent=self.name):
            if self._bus is not None:
                await self._bus.connect()
            if self._broker is not None:
                await self._broker.connect()
            await self._run_hooks("pre_start")
            self._running = True
            try:
                await self._bind()
                await self._run_hooks("post_start")
            except BaseException:  # a half-started agent would run unsupervised: undo it
                await self._unbind(grace=0)
                self._running = False
                raise
            self.log.info(
                "started: %d receiver(s), %d consumer(s), %d schedule(s)",
                len(type(self).handlers.receivers),
                len(type(self).handlers.consumers),
                len(type(self).handlers.schedules),
            )

    async def stop(self, grace_period: float | None = None) -> None:
        """Run ``pre_stop`` hooks, stop intake, let in-flight handlers finish within the grace
        period (then cancel them: their messages go back to the queue), run ``post_stop``."""
        if not self._running:
            return
        grace = self.grace_period if grace_period is None else grace_period
        with log_context(agent=self.name):
            try:
                await self._run_hooks("pre_stop")
            except Exception as exc:  # stopping must not depend on a hook
                self.log.error("pre_stop hook failed: %s", describe(exc), exc_info=True)
            await self._unbind(grace)
            self._running = False
            await self._run_hooks("post_stop")
            self.log.info("stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _open_consumers(self, consumers: Iterable[Handler]) -> list[Any]:
        """One consumer per handler, opened concurrently. What opened is kept in
        ``_consumers`` even when another fails or this is cancelled, so stopping closes it."""
        broker = self._broker
        assert broker is not None
        opening = []
        for handler in consumers:
            spec = handler.spec
            assert isinstance(spec, ConsumerSpec)
            opening.append(
                asyncio.ensure_future(
                    broker.consume(spec.queue, prefetch=_prefetch(spec), name=self.instance_id)
                )
            )
        try:
            await asyncio.wait(opening)
        finally:
            for attempt in opening:
                attempt.cancel()  # only those still opening: we were cancelled
            await asyncio.gather(*opening, return_exceptions=True)
            opened = [a for a in opening if not a.cancelled() and a.exception() is None]
            self._consumers.extend(a.result() for a in opened)
        for failed in opening:
            error = failed.exception()
            if error is not None:
                raise error
        return [attempt.result() for attempt in opening]

    async def _bind(self) -> None:
        handlers = type(self).handlers
        if self._by_signal:
            assert self._bus is not None
            start = (
                partial(observed_receiver, self)
                if self._hooks.watching or self._hooks.counting
                else partial(start_receiver, self)
            )
            self._receivers = ReceiverPool(start, self._spawn)
            self._subscription = await self._bus.subscribe(self._by_signal, self._on_signal)
        # Consumers start together: on some engines (a Kafka group join) each takes seconds.
        started: list[Any] = []
        if handlers.consumers:
            started = await self._open_consumers(handlers.consumers)
        for handler, consumer in zip(handlers.consumers, started, strict=True):
            spec = handler.spec
            assert isinstance(spec, ConsumerSpec)
            consumer_workers(
                consumer,
                spec.concurrency,
                self._processor(handler),
                self._consumer_failed(spec.queue.name),
                self._spawn,
                spec.batch,
                spec.batch_timeout,
            )
        for handler in handlers.schedules:
            spec = handler.spec
            run = job_runner(self, handler)
            if is_single(spec):  # once across replicas: microhive/agent/single.py
                assert isinstance(spec, PeriodicSpec | CronSpec)
                name, skipped = f"{self.name}.{handler.name}", partial(self._skipped, handler.name)
                loop = single_loop(
                    spec, self._lease_source, name, self.instance_id, run, self.log, skipped
                )
                self._loops.append(self._loop_task(loop, handler))
            elif isinstance(spec, PeriodicSpec):
                skipped = partial(self._skipped, handler.name)
                loop = periodic_loop(spec, run, self.log, skipped)
                self._loops.append(self._loop_task(loop, handler))
            elif isinstance(spec, CronSpec):
                self._loops.append(self._loop_task(cron_loop(spec, run, self.log), handler))
        if self.heartbeat is not None:
            beats = heartbeat_loop(self, self.heartbeat)
            self._loops.append(
                asyncio.get_running_loop().create_task(beats, name=f"{self.name}.heartbeat")
            )

    async def _unbind(self, grace: float) -> None:
        """Stop intake, let what was taken finish within ``grace``, then cancel the rest."""
        if self._subscription is not None:
            await self._subscription.close()
            self._subscription = None
        if self._receivers is not None:
            self._receivers.close()
            self._receivers = None
        for consumer in self._consumers:
            await consumer.close()
        self._consumers.clear()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops.clear()
        pending = set(self._tasks)
        if pending and grace > 0:
            _, pending = await asyncio.wait(pending, timeout=grace)
        if pending:
            self.log.warning("grace period over: cancelling %d handler(s)", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _loop_task(
        self, coroutine: Coroutine[Any, Any, None], handler: Handler
    ) -> asyncio.Task[None]:
        async def guarded() -> None:
            with log_context(agent=self.name, handler=handler.name):
                await coroutine

        task = asyncio.get_running_loop().create_task(guarded(), name=f"{self.name}.{handler.name}")
        task.add_done_callback(lambda _: coroutine.close())  # cancelled before it began
        return task

    def _spawn(self, coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start a task in the agent's log context, tracked so stop() can wait for it.

        The task starts from an empty context: whoever happened to trigger it (on memory://,
        the sender's task) must not leak its log context or current message into it.
        """
        task = asyncio.get_running_loop().create_task(
            self._in_context(coroutine), context=contextvars.Context()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- dispatch ----------------------------------------------------------------------

    def _on_signal(self, envelope: Envelope) -> None:
        receivers = self._receivers
        if receivers is not None:
            for handler in self._by_signal.get(envelope.name, ()):
                receivers.put(handler, envelope)

    def _processor(self, handler: Handler) -> Any:
        spec = handler.spec
        assert isinstance(spec, ConsumerSpec)
        if spec.batch:
            return partial(process_batch, self, handler)
        counting = self._counting("message", handler.name, spec.queue.name)
        if len(counting) == 1 and not self._hooks.watching:  # metrics alone: the fast path
            (counter,) = counting
            return partial(counted_once, self, handler, counter.started, counter.ended)
        if counting and not self._hooks.watching:
            return partial(process_counted, self, handler, counting)
        return partial(process, self, handler)

    def _counting(self, kind: str, handler: str, name: str) -> tuple[Counter, ...]:
        """The middleware's counters for one handler and name, asked once (then cached)."""
        if not self._hooks.counting:
            return ()
        key = (kind, handler, name)
        found = self._counted.get(key)
        if found is None:
            found = self._counted[key] = counters(self._hooks, kind, self.name, handler, name)
        return found

    def _consumer_failed(self, queue: str) -> Any:
        def failed(exc: Exception) -> None:
            self.log.error("consumer of %r: %s", queue, describe(exc))

        return failed

    async def _in_context(self, coroutine: Coroutine[Any, Any, None]) -> None:
        with log_context(agent=self.name):
            await coroutine

    async def _reply(
        self, request: Envelope, value: Any = None, error: BaseException | None = None
    ) -> None:
        assert self._bus is not None
        try:
            await self._bus.reply(request, self.instance_id, value=value, error=error)
        except Exception as exc:
            self.log.error("could not answer call %r: %s", request.name, describe(exc))

    def _skipped(self, handler: str, runs: int) -> None:
        if self._hooks.skipped:
            notify(self._hooks.skipped, self.name, handler, runs)

    # -- hooks -------------------------------------------------------------------------

    async def _run_hooks(self, event: str, *args: Any, **kwargs: Any) -> None:
        for hook in type(self).handlers.hooks_for(event):
            accepted = (
                kwargs
                if hook.parameters.var_keyword
                else {k: v for k, v in kwargs.items() if k in hook.parameters.names}
            )
            result = hook.function(
                self, *args[: 1 if hook.parameters.positional else 0], **accepted
            )
            if inspect.isawaitable(result):
                await result

    async def _error_hooks(
        self, handler: Handler, exc: BaseException, envelope: Envelope | None
    ) -> None:
        """``error_<handler>`` hooks, then ``error`` hooks; a failing hook is only logged."""
        for event in (f"error_{handler.name}", "error"):
            try:
                await self._run_hooks(event, exc, handler=handler.name, message=envelope)
            except BaseException as hook_exc:
                if cancelled_from_outside(hook_exc):
                    raise
                self.log.error("hook %s failed: %s", event, describe(hook_exc), exc_info=True)


def _prefetch(spec: ConsumerSpec) -> int:
    """How many deliveries a consumer may hold: one per handler slot, or for batch handlers
    four batches per slot, so the next batches are read while one is handled."""
    return spec.concurrency * 4 * spec.batch if spec.batch else spec.concurrency

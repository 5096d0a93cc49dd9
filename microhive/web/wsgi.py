"""Agents inside a WSGI app (Dash, Flask, Django): a host that owns the event-loop thread.

::

    from microhive.web import Host

    host = Host(Satellite, broker="kafka://127.0.0.1:9092").start()

    @app.callback(Output("graph", "figure"), Input("tick", "n_intervals"))
    def refresh(_):
        readings = host.tail("telemetry", last=180, key="TERRA").payloads()
        ...

A WSGI server calls the app from its own threads and has no event loop; the host runs one
in a daemon thread of its own, starts the agents there, and gives the threads what they may
touch: live views (:meth:`Host.tail`, :meth:`Host.latest`, read under a lock) and a blocking
bridge (:meth:`Host.send`, :meth:`Host.signal`, :meth:`Host.call`). It stops at interpreter
exit (``atexit``) and, when started in the main thread, on SIGTERM too.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Coroutine
from types import FrameType, TracebackType
from typing import Any, ParamSpec, Self, TypeVar

from ..declarations import Queue, Signal
from ..errors import TransportError
from .hive import AgentFactory, WebHive
from .views import Latest, Tail

log = logging.getLogger("microhive.web")

T = TypeVar("T")
P = ParamSpec("P")

EXTRA_WAIT = 30.0
"""How much longer than a call's own timeout a caller waits for the loop to answer."""


class Host:
    """A :class:`WebHive` in a thread of its own, for synchronous code. Options are
    :class:`WebHive`'s; ``start_timeout`` bounds :meth:`start` and :meth:`stop`."""

    def __init__(self, *agents: AgentFactory, start_timeout: float = 60.0, **options: Any) -> None:
        self.hive = WebHive(*agents, **options)
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._previous_sigterm: Any = None

    def __repr__(self) -> str:
        state = "running" if self._loop is not None else "stopped"
        return f"<Host {self.hive.name!r} {state}>"

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the loop thread and every agent; returns once they run (or raises what
        stopped them). Calling it again while running does nothing."""
        with self._lock:
            if self._loop is not None:
                return self
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_forever, args=(loop,), name="microhive-host", daemon=True
            )
            thread.start()
            future = asyncio.run_coroutine_threadsafe(self.hive.start(), loop)
            try:
                future.result(self.start_timeout)
            except BaseException as exc:
                stuck = not future.done()
                future.cancel()
                with contextlib.suppress(Exception):  # undo a half start, then end the thread
                    asyncio.run_coroutine_threadsafe(self.hive.stop(), loop).result(
                        self.start_timeout
                    )
                _halt(loop, thread)
                if stuck:
                    raise TransportError(
                        f"{self!r}: the agents did not start within {self.start_timeout:g} s"
                    ) from exc
                raise
            self._loop, self._thread = loop, thread
        atexit.register(self.stop)
        self._catch_sigterm()
        return self

    def stop(self) -> None:
        """Stop the agents (within their grace period), close the connections, end the
        thread. Safe to call twice, from ``atexit`` and from any thread but the host's."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.stop)
        self._release_sigterm()
        try:
            asyncio.run_coroutine_threadsafe(self.hive.stop(), loop).result(
                self.hive.grace_period + self.start_timeout
            )
        except Exception as exc:
            log.error("%r did not stop cleanly: %s", self, exc)
        _halt(loop, thread)

    def _catch_sigterm(self) -> None:
        """SIGTERM ends a process without ``atexit``; turn it into ``SystemExit`` (which runs
        it) unless the program set a handler of its own; :meth:`stop` puts the default back."""
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _exit_on_sigterm)
            self._previous_sigterm = signal.SIG_DFL

    def _release_sigterm(self) -> None:
        if self._previous_sigterm is None:
            return
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._loop is not None

    # -- what the app's threads use --------------------------------------------------------

    def tail(self, queue: Queue | str, *, last: int, key: str | None = None) -> Tail:
        """A live :class:`Tail` (the last ``last`` messages of ``queue``, of ``key``'s if
        given, then every new one); the same arguments give the same view, so a callback may
        ask on every refresh."""
        return self._wait(_in_loop(self.hive.tail, queue, last=last, key=key))

    def latest(self, queue: Queue | str, *, last: int = 1000) -> Latest:
        """A live :class:`Latest`: the newest message of each key of ``queue``."""
        return self._wait(_in_loop(self.hive.latest, queue, last=last))

    def send(self, queue: Queue | str, payload: Any, **options: Any) -> str:
        """Enqueue ``payload`` (``key=``, ``delay=``, ``headers=`` as ``broker.send``);
        returns the message id once the engine accepted it."""
        return self._wait(self.hive.send(queue, payload, **options))

    def signal(self, signal: Signal | str, **kwargs: Any) -> None:
        """Broadcast a signal on the host's bus."""
        self._wait(self.hive.signal(signal, **kwargs))

    def call(self, signal: Signal | str, *, timeout: float = 60, **kwargs: Any) -> Any:
        """A call over the host's bus: the first answer, or :class:`CallTimeout`."""
        return self._wait(self.hive.call(signal, timeout=timeout, **kwargs), timeout)

    def _wait(self, coroutine: Coroutine[Any, Any, T], timeout: float = 0.0) -> T:
        loop = self._loop
        if loop is None:
            coroutine.close()
            raise RuntimeError(f"{self!r}: call start() first")
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError(f"{self!r}: blocking call from the host's own loop (await it)")
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        limit = timeout + EXTRA_WAIT
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            if future.done():  # a CallTimeout is a TimeoutError too: the loop's own answer
                raise
            future.cancel()
            raise TransportError(f"{self!r}: no answer within {limit:g} s") from None


async def _in_loop(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs ``function`` in the loop (views open tasks there)."""
    return function(*args, **kwargs)


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()


def _halt(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM is the way to stop a service: a clean exit (0), as ``microhive run``'s."""
    raise SystemExit(0)

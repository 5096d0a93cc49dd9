"""A blocking publisher for code that is not asyncio: Django or Flask views, scripts, workers.

::

    from microhive.sync import Publisher

    events = Publisher("amqp://user:password@rabbit/feed", sender="registrar")
    events.send("events_feed", {"event": "hired", "name": "Ann"})   # returns once confirmed

One :class:`Publisher` is meant to live as long as the process and to be shared by every
thread: it runs its own event loop in a daemon thread with one broker (for ``amqp://``, one
connection with a publisher-confirm window), so concurrent ``send`` calls from many threads
are pipelined together. ``send`` returns the message id once the engine accepted the message
(confirmed), reconnects by itself after a loss, and raises when it cannot deliver within the
broker's ``retry_timeout`` (:class:`~microhive.errors.TransportError`), or at once when the
message is refused (unroutable, queue full, bad payload). It works with any broker URL.

Tasks too: ``job = events.submit(Queue("add").s(x=1, y=1))`` returns at once, and
``job.result(timeout=3)`` blocks until the result is there (docs/tasks.md).

After ``os.fork()`` (gunicorn, multiprocessing) the child starts a loop and connection of its
own on first use; connections are never shared across processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, Unpack

from .broker import QueueBroker
from .codecs import Codec
from .declarations import Exchange, Namespace, Queue, queues_of
from .errors import TransportError
from .urls import redact

if TYPE_CHECKING:
    from .tasks.canvas import Signature, Workflow
    from .tasks.job import Job
    from .tasks.store import JobState
    from .tasks.submit import SubmitOptions

T = TypeVar("T")
R = TypeVar("R")

EXTRA_WAIT = 30.0
"""How much longer than the broker's own ``retry_timeout`` a caller waits for an answer."""


class Publisher:
    """Thread-safe, blocking ``send`` and ``publish`` to a queue broker given by URL."""

    def __init__(
        self,
        url: str,
        *,
        queues: Iterable[Queue] | Namespace[Queue] | None = None,
        codec: Codec | None = None,
        sender: str = "",
        timeout: float | None = None,
        **options: Any,
    ) -> None:
        self.url = url
        self.queues = queues_of(queues)
        self.codec = codec
        self.sender = sender
        self.timeout = timeout
        self.options = options
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: QueueBroker | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<Publisher {redact(self.url)}>"

    # -- the background loop -----------------------------------------------------------------

    def _start(self) -> tuple[asyncio.AbstractEventLoop, QueueBroker]:
        with self._lock:
            if self._closed:
                raise TransportError(f"{self!r} is closed")
            if self._pid != os.getpid() or self._loop is None or self._broker is None:
                # first use, or a forked child: the parent's thread does not exist here
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=run, name="microhive-publisher", daemon=True)
                thread.start()
                ready.wait()
                options = dict(self.options)
                if self.codec is not None:
                    options["codec"] = self.codec
                broker = QueueBroker.from_url(self.url, queues=self.queues, **options)
                self._loop, self._thread, self._broker = loop, thread, broker
                self._pid = os.getpid()
            return self._loop, self._broker

    def _wait(self, coroutine: Coroutine[Any, Any, R], timeout: float | None = None) -> R:
        loop, broker = self._start()
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        timeout = self.timeout if timeout is None else timeout
        if timeout is None:
            retry = getattr(getattr(broker, "options", None), "retry_timeout", 30.0)
            timeout = float(retry) * 2 + EXTRA_WAIT
        # not future.result(timeout): its TimeoutError is also what a ResultTimeout raised
        # by the coroutine is, and that must reach the caller as itself
        if not concurrent.futures.wait([future], timeout).done:
            future.cancel()
            raise TransportError(f"{self!r}: no answer within {timeout:g} s")
        return future.result()

    # -- user API ------------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect now rather than on the first send (to fail early on a bad URL)."""
        _, broker = self._start()
        self._wait(broker.connect())

    def send(
        self,
        queue: Queue | str,
        payload: Any,
        *,
        key: str | None = None,
        delay: float | None = None,
        headers: Mapping[str, str] | None = None,
        sender: str | None = None,
    ) -> str:
        """Enqueue ``payload``; returns the message id once the engine confirmed it.

        ``queue`` may be a name the publisher's catalog does not declare.
        """
        _, broker = self._start()
        if isinstance(queue, str):
            queue = self.queues.get(queue) or Queue(queue)
        return self._wait(
            broker.send(
                queue,
                payload,
                key=key,
                delay=delay,
                headers=headers,
                sender=self.sender if sender is None else sender,
            )
        )

    def publish(
        self,
        exchange: Exchange | str,
        payload: Any,
        *,
        routing_key: str = "",
        headers: Mapping[str, str] | None = None,
        sender: str | None = None,
    ) -> str:
        """Publish to an exchange (brokers with routing); returns once confirmed."""
        _, broker = self._start()
        return self._wait(
            broker.publish(
                exchange,
                payload,
                routing_key=routing_key,
                headers=headers,
                sender=self.sender if sender is None else sender,
            )
        )

    def submit(
        self, target: Signature[Any] | Workflow, **options: Unpack[SubmitOptions]
    ) -> SyncJob[Any]:
        """Submit a task or workflow (``Queue("add").s(x=1, y=1)``); returns at once.
        Options as ``QueueBroker.submit``."""
        _, broker = self._start()
        options.setdefault("sender", self.sender)
        return SyncJob(self, self._wait(broker.submit(target, **options)))

    def job(self, job_id: str) -> SyncJob[Any]:
        """The job ``job_id``, submitted by anyone, to ask or wait for."""
        _, broker = self._start()
        return SyncJob(self, broker.job(job_id))

    def close(self) -> None:
        """Close the connection and stop the loop; later sends raise."""
        with self._lock:
            self._closed = True
            loop, thread, broker = self._loop, self._thread, self._broker
            self._loop = self._thread = self._broker = None
            mine = self._pid == os.getpid()
        if loop is None or not mine:
            return
        if broker is not None:
            with contextlib.suppress(Exception):  # closing must not fail the caller
                asyncio.run_coroutine_threadsafe(broker.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SyncJob(Generic[T]):
    """A :class:`~microhive.tasks.job.Job` for blocking code: ``job.result(timeout=3)``."""

    __slots__ = ("_job", "_publisher")

    def __init__(self, publisher: Publisher, job: Job[T]) -> None:
        self._publisher = publisher
        self._job = job

    @property
    def id(self) -> str:
        return self._job.id

    def __repr__(self) -> str:
        return f"<SyncJob {self.id}>"

    def status(self) -> JobState:
        return self._publisher._wait(self._job.status())

    def progress(self) -> Any:
        return self._publisher._wait(self._job.progress())

    def result(self, timeout: float) -> T:
        """Block until the result is there (raises as ``Job.result`` does)."""
        return self._publisher._wait(self._job.result(timeout), timeout + EXTRA_WAIT)

    def revoke(self, reason: str = "revoked") -> bool:
        return self._publisher._wait(self._job.revoke(reason))

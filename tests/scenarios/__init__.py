"""Recovery and security scenarios, each written once and run on every engine that can.

A scenario is a coroutine that takes an :class:`Engine` (what differs between engines:
how to run a private server of its own, the options that make it recover promptly, what it
guarantees) and asserts outcomes — counts, order, states, what the logs say — never how
long anything took. Each engine's test package calls the scenarios it can run
(``tests/<engine>/test_recovery.py``, ``test_security.py``, ``test_processes.py``).

What "recovers" means differs by kind: a signal published while the server is away is lost
(the bus subscribes again and says which window it may have missed), a queue message the
server acknowledged is not (at least once; exactly once where the server persists acks
before answering, as Redis with ``appendfsync always`` does).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .. import engines
from ..amqp import server as amqp


class Server(Protocol):
    """A private server on a free loopback port (:class:`tests.engines.PrivateServer`,
    :class:`tests.amqp.server.RabbitNode`): started, SIGKILLed or stopped, started again on
    the same port and files."""

    directory: Path
    port: int

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def kill(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Engine:
    """What the scenarios need to know about one engine."""

    name: str
    scheme: str
    path: str = ""
    """What follows ``host:port`` in a URL (Redis: the database, AMQP: the virtual host)."""
    private: Callable[[Path], Server] | None = None
    """A private server with its files under the directory, not started (None: none here)."""
    quick: Mapping[str, Any] = field(default_factory=dict)
    """URL options that make recovery on a private server prompt (timeouts, redelivery)."""
    signals: bool = True
    """Carries signals (a SignalBus) as well as queues."""
    credentials: bool = True
    """Takes a user and password in the URL."""
    exactly_once: bool = False
    """A SIGKILL of the server cannot make it forget an acknowledgement it answered: the
    messages of a restart test are processed exactly once (else at least once)."""
    recovered: tuple[str, ...] = ()
    """What the logs say once the link, the subscriptions and the consumers are back."""
    retried: str = r"; retrying"
    """A pattern in the logs (or the final error) saying connect() tried again."""
    forget: Callable[[Server], None] | None = None
    """Make a killed server lose everything it stored (None: it cannot be made to)."""

    def url(self, port: int, userinfo: str = "", **options: Any) -> str:
        """A URL for ``127.0.0.1:port`` with ``userinfo`` (``user:password``) and options."""
        at = f"{userinfo}@" if userinfo else ""
        return engines.with_query(f"{self.scheme}://{at}127.0.0.1:{port}{self.path}", **options)

    def on(self, server: Server, **options: Any) -> str:
        """The private ``server``'s URL with the quick options and ``options``."""
        return engines.with_query(server.url, **{**self.quick, **options})


def running(engine: Engine, directory: Path) -> Iterator[Server]:
    """A started private server of ``engine`` for a fixture to yield; stopped after."""
    assert engine.private is not None, f"no private {engine.name} server here"
    server = engine.private(directory / engine.name)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def _rabbit_node(directory: Path) -> Server:
    """A RabbitMQ node runs as the rabbitmq user (when we are root), which cannot enter
    pytest's private temporary directories: its files go to a directory of its own in the
    system's (the ``directory`` given is not used), removed after the test."""
    return amqp.RabbitNode(Path(tempfile.mkdtemp(prefix="microhive-rabbit-")))


def _redis_forget(server: Server) -> None:
    shutil.rmtree(server.directory / "appendonlydir", ignore_errors=True)  # Redis 7
    (server.directory / "appendonly.aof").unlink(missing_ok=True)  # Redis 6


def _nats_forget(server: Server) -> None:
    shutil.rmtree(server.directory / "store")  # no stream, no consumer


def _amqp_forget(server: Server) -> None:
    shutil.rmtree(server.directory / "mnesia")  # no queue, no exchange, no message
    (server.directory / "mnesia").mkdir()
    amqp.give_to_rabbitmq(server.directory)


REDIS = Engine(
    "redis",
    "redis",
    "/0",
    # the append-only file on (fsync always): what the server answered survives a SIGKILL
    private=lambda directory: engines.RedisServer(directory, appendonly=True),
    quick={"claim_idle": 1},
    exactly_once=True,
    recovered=("connected to", "again", "subscribed again", "signals published between"),
    forget=_redis_forget,
)

NATS = Engine(
    "nats",
    "nats",
    private=engines.NatsServer,
    quick={"ack_wait": 1, "expires": 1, "reconnect_wait": 0.3},
    recovered=("connected to", "again", "subscribed again", "signals published between"),
    retried=r"; trying again",
    forget=_nats_forget,
)

AMQP = Engine(
    "amqp",
    "amqp",
    "/",
    private=_rabbit_node,
    quick={"retry_timeout": 60},  # a send waits out the node's restart (a few seconds)
    recovered=("reconnected to RabbitMQ", "signals published meanwhile were lost"),
    forget=_amqp_forget,
)

KAFKA = Engine(
    "kafka",
    "kafka",
    signals=False,
    credentials=False,  # no SASL yet: a URL with credentials is refused (test_options.py)
    retried=r"\(connect_timeout; ([2-9]|\d\d+) attempts\)",
)

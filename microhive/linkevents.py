"""Link events: every transport's connection says when it is lost and when it is back.

Each engine's link calls :func:`lost` and :func:`restored` (and :func:`closed` when it is
closed for good); the events go to every watching middleware's
:meth:`~microhive.middleware.Middleware.linked` hook — each hook once, however many buses
and brokers carry it — and :func:`down` lists the links lost right now (readiness). Links
are process-wide (a broker's link is shared by every broker of one URL), so a watcher hears
the links of the whole process, not only of the bus or broker it was given to.

Only a loss and the recovery after it are events: a first connect that fails is an error of
``connect()``, not a reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("microhive.middleware")


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """A connection to an engine was lost (``up`` False) or is back (``up`` True)."""

    engine: str
    """``redis``, ``amqp``, ``nats`` or ``kafka``."""
    role: str
    """What the link serves: ``broker``, ``bus``, ``consumer``, ``tail`` or ``connection``
    (RabbitMQ's one connection per URL carries them all)."""
    up: bool
    url: str
    """The engine's URL with its password hidden."""


Watcher = Callable[[LinkEvent], None]

_watchers: dict[Watcher, int] = {}
_down: weakref.WeakKeyDictionary[object, tuple[LinkEvent, asyncio.AbstractEventLoop | None]] = (
    weakref.WeakKeyDictionary()
)
"""Links lost now, with their event loop: a link dropped without being closed leaves, and
each loop (a test's, a process's) sees only its own."""


def watch(hook: Watcher) -> None:
    """Hear every link event from now on (counted: each :func:`unwatch` undoes one)."""
    _watchers[hook] = _watchers.get(hook, 0) + 1


def unwatch(hook: Watcher) -> None:
    count = _watchers.get(hook, 0) - 1
    if count > 0:
        _watchers[hook] = count
    else:
        _watchers.pop(hook, None)


def role_of(description: str) -> str:
    """A fixed word for a link's role (its description may hold names and ids)."""
    for word in ("consumer", "tail", "bus", "signal", "broker"):
        if word in description:
            return "bus" if word == "signal" else word
    return "connection"


def lost(link: object, engine: str, role: str, url: str) -> None:
    """``link`` (any object that takes weak references) lost its connection (reported once
    until it is restored)."""
    if link in _down:
        return
    event = LinkEvent(engine, role_of(role), False, url)
    _down[link] = (event, _loop())
    _emit(event)


def restored(link: object) -> None:
    """``link`` is connected again after :func:`lost` (nothing if it was not lost)."""
    found = _down.pop(link, None)
    if found is not None:
        event = found[0]
        _emit(LinkEvent(event.engine, event.role, True, event.url))


def closed(link: object) -> None:
    """``link`` is closed for good: no longer down, and no event."""
    _down.pop(link, None)


def down() -> list[LinkEvent]:
    """The links of the running event loop (of every loop, outside one) lost right now."""
    loop = _loop()
    return [event for event, owner in list(_down.values()) if loop is None or owner is loop]


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _emit(event: LinkEvent) -> None:
    for hook in list(_watchers):
        try:
            hook(event)
        except Exception:
            log.exception("middleware hook %r failed", hook)

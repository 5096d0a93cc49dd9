"""The events of the company feed and the one durable queue they travel through.

Every service that has news for the feed (the registrar here; in the seed, many more) sends
one of these shapes to the queue ``events``. The queue carries a pydantic schema: microhive
checks it at a microhive sender, and again at the feed agent, where an event in another
shape — from a plain pika client, an older service — is dead-lettered with the validation
error as its reason instead of breaking the feed.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, RootModel

from microhive import Namespace, Queue

Name = Annotated[str, Field(min_length=1, max_length=200)]


class Hired(BaseModel):
    """A new employee was registered."""

    kind: Literal["hired"] = "hired"
    employee: Name
    department: Name
    position: Name


class PositionChanged(BaseModel):
    kind: Literal["position_changed"] = "position_changed"
    employee: Name
    position: Name


class DepartmentRenamed(BaseModel):
    kind: Literal["department_renamed"] = "department_renamed"
    department: Name
    new_name: Name


class Liked(BaseModel):
    """A reaction to an earlier event of the feed, named by its message id."""

    kind: Literal["liked"] = "liked"
    employee: Name
    event: Name


AnyEvent = Annotated[
    Hired | PositionChanged | DepartmentRenamed | Liked, Field(discriminator="kind")
]


class Event(RootModel[AnyEvent]):
    """Any event of the feed: which one is told by ``kind``."""


EVENTS = Queue("events", schema=Event)
"""The durable queue of the feed (an AMQP queue ``events`` that plain clients publish to)."""

queues = Namespace([EVENTS], kind="queue")
"""The example's queues by name, as in the seed talk: ``@consumer(queues.events)``."""


def describe(event: AnyEvent) -> str:
    """One line of the feed page."""
    match event:
        case Hired():
            return f"{event.employee} joined {event.department} as {event.position}"
        case PositionChanged():
            return f"{event.employee} is now {event.position}"
        case DepartmentRenamed():
            return f"Department {event.department} is now called {event.new_name}"
        case Liked():
            return f"{event.employee} liked an event"

"""The employee registrar: an HTTP API whose actions become events of the feed.

It never calls the feed: it sends each event to the durable queue and answers at once
(``202 Accepted`` with the message id), as the seed's third solution does. The async
endpoints send through the app's :class:`~microhive.QueueBroker`; the batch import is plain
synchronous code (it could be a Django view or a script) and sends through
:class:`microhive.sync.Publisher`, which is thread-safe and blocks until RabbitMQ confirmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel

from microhive import QueueBroker
from microhive.sync import Publisher

from .events import EVENTS, DepartmentRenamed, Event, Hired, Liked, Name, PositionChanged

SENDER = "registrar"


class EventSender(Protocol):
    """What synchronous code needs to publish: ``send(queue, payload) -> message id``."""

    def send(self, queue: Any, payload: Any) -> str: ...

    def close(self) -> None: ...


class LoopPublisher:
    """``memory://`` only: a hive lives in one event loop, so a synchronous caller (in a
    worker thread) hands its send to that loop. On every other URL :class:`Publisher` does
    this with a loop and connection of its own."""

    def __init__(self, broker: QueueBroker, loop: asyncio.AbstractEventLoop) -> None:
        self.broker, self.loop = broker, loop

    def send(self, queue: Any, payload: Any) -> str:
        sent = self.broker.send(queue, payload, sender=SENDER)
        return asyncio.run_coroutine_threadsafe(sent, self.loop).result(30)

    def close(self) -> None:
        pass


def sync_sender(url: str, broker: QueueBroker) -> EventSender:
    """The synchronous path for ``url``: a :class:`Publisher`, or the loop's own broker
    on ``memory://`` (call from the app's event loop)."""
    if url.startswith("memory://"):
        return LoopPublisher(broker, asyncio.get_running_loop())
    return Publisher(url, queues=[EVENTS], sender=SENDER)


def import_employees(sender: EventSender, employees: Iterable[Hired]) -> list[str]:
    """The synchronous code path: one ``hired`` event per employee, in order; returns the
    message ids. Blocking: call it from a thread (FastAPI runs ``def`` endpoints in one)."""
    return [sender.send(EVENTS, Event(employee)) for employee in employees]


# -- the HTTP API ------------------------------------------------------------------------


def broker_of(request: Request) -> QueueBroker:
    broker: QueueBroker = request.app.state.broker
    return broker


def sender_of(request: Request) -> EventSender:
    sender: EventSender = request.app.state.publisher
    return sender


Broker = Annotated[QueueBroker, Depends(broker_of)]
PathName = Annotated[str, Path(min_length=1, max_length=200)]


class Accepted(BaseModel):
    message_id: str


class NewPosition(BaseModel):
    position: Name


class NewName(BaseModel):
    new_name: Name


class Reaction(BaseModel):
    employee: Name


async def publish(broker: QueueBroker, event: Any, sender: str = SENDER) -> Accepted:
    return Accepted(message_id=await broker.send(EVENTS, Event(event), sender=sender))


router = APIRouter(prefix="/api", tags=["registrar"])
likes = APIRouter(prefix="/api", tags=["reactions"])
"""The like, which the feed page serves as well (its button posts there)."""


@router.post("/employees", status_code=202)
async def register(employee: Hired, broker: Broker) -> Accepted:
    """Register a new employee."""
    return await publish(broker, employee)


@router.post("/employees/import", status_code=202)
def import_batch(employees: list[Hired], request: Request) -> list[Accepted]:
    """Register many employees at once, through the synchronous publisher."""
    ids = import_employees(sender_of(request), employees)
    return [Accepted(message_id=message_id) for message_id in ids]


@router.post("/employees/{employee}/position", status_code=202)
async def change_position(employee: PathName, change: NewPosition, broker: Broker) -> Accepted:
    return await publish(broker, PositionChanged(employee=employee, position=change.position))


@router.post("/departments/{department}/rename", status_code=202)
async def rename_department(department: PathName, change: NewName, broker: Broker) -> Accepted:
    return await publish(broker, DepartmentRenamed(department=department, new_name=change.new_name))


@likes.post("/events/{message_id}/likes", status_code=202)
async def like(
    message_id: PathName, reaction: Reaction, broker: Broker, request: Request
) -> Accepted:
    """React to an event of the feed (given by its message id) with a like; the sender is
    the service that took the click (``app.state.sender``: the registrar or the page)."""
    sender = getattr(request.app.state, "sender", SENDER)
    return await publish(broker, Liked(employee=reaction.employee, event=message_id), sender)

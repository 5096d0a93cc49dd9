"""Agents and declarations the AsyncAPI tests describe: schemas (nested, two models both
called Address), exchanges of each type, receivers, a call, consumers, schedules, sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from microhive import Exchange, MicroAgent, Queue, Signal, consumer, cron, periodic, receiver
from microhive.catalog import Catalog
from microhive.declarations import Namespace


class Address(BaseModel):
    city: str
    zip: str | None = None


class Item(BaseModel):
    sku: str
    quantity: int = 1


class Order(BaseModel):
    id: int
    items: list[Item]
    ship_to: Address
    placed_at: datetime


def _legacy() -> type[BaseModel]:
    class Address(BaseModel):  # same name, other shape: must not replace the first
        street: str
        number: int

    class Registered(BaseModel):
        user: str
        address: Address

    return Registered


Registered = _legacy()

notify = Exchange("notify", "topic")
audit = Exchange("audit", "fanout")
mailroom = Exchange("mailroom", "direct")

user_enter = Signal("user_enter", ["name"])
check_user = Signal("check_user", ["user"])
order_placed = Signal("order_placed", schema=Order)
registered = Signal("registered", schema=Registered)

orders = Queue("orders", Order)
sms = Queue("sms", bindings=[(notify, "app.sms.#"), audit])
email = Queue("email", bindings=[(notify, "app.email.*"), (mailroom, "mail"), (mailroom, "post")])
reports = Queue("reports")


class Shop(MicroAgent):
    """Takes orders and answers whether a user is known.

    The second paragraph is not part of the summary."""

    catalog = Catalog(Namespace([order_placed], kind="signal"), Namespace([reports], kind="queue"))

    @consumer(orders, concurrency=4, retries=2)
    async def take(self, order: Order) -> None:
        """Stores one order."""

    @receiver(check_user)
    async def check(self, user: str, **kw: Any) -> bool:
        return True

    @cron("0 * * * *", tz="Europe/Berlin")
    async def hourly(self) -> None:
        pass

    @periodic(5, timeout=2)
    async def tick(self) -> None:
        pass


class Notifier(MicroAgent):
    @receiver(user_enter, order_placed)
    async def hello(self, **kw: Any) -> None:
        pass

    @consumer(sms, autoack=True)
    async def text(self, *payload: Any, **kw: Any) -> None:
        pass

    @consumer(email, batch=10)
    async def mails(self, payloads: list[Any]) -> None:
        pass


AGENTS = [Shop, Notifier]
CATALOG = Catalog(Namespace([registered], kind="signal"), Namespace(kind="queue"))

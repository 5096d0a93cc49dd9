"""A small hive for the console's tests, run as ``microhive run tests.console.hive``.

``Producer`` sends to ``console_backlog`` (which nobody consumes: its length grows while the
producer runs) and broadcasts ``console_tick``. ``Worker`` consumes ``console_orders`` and
appends each order it handled to ``$MH_CONSOLE_RECORD``; while the file
``$MH_CONSOLE_RECORD.broken`` exists it fails them instead (no retries: straight to the
dead letters), so a test can break the worker, fix it, and requeue. Its ``@task`` on
``console_invoice`` keeps a result, for the Jobs panel.
"""

from __future__ import annotations

import os
from pathlib import Path

from microhive import (
    Catalog,
    MicroAgent,
    Namespace,
    Queue,
    Signal,
    consumer,
    periodic,
    receiver,
    task,
)

BACKLOG = Queue("console_backlog")
ORDERS = Queue("console_orders")
INVOICE = Queue("console_invoice", providing_args=["total"])
TICK = Signal("console_tick", ["n"])


def record_path() -> Path | None:
    path = os.environ.get("MH_CONSOLE_RECORD")
    return Path(path) if path else None


class Producer(MicroAgent):
    catalog = Catalog(Namespace([TICK], kind="signal"), Namespace([BACKLOG], kind="queue"))
    sent = 0

    @periodic(period=0.2)
    async def produce(self) -> None:
        self.sent += 1
        await self.broker.console_backlog.send({"n": self.sent})
        await self.bus.console_tick.send(n=self.sent)


class Worker(MicroAgent):
    @consumer(ORDERS, retries=0)
    async def order(self, item: str) -> None:
        path = record_path()
        if path is not None and path.with_suffix(".broken").exists():
            raise RuntimeError(f"worker is broken, cannot handle {item}")
        if path is not None:
            with path.open("a") as file:
                file.write(f"{item}\n")

    @task(INVOICE)
    async def invoice(self, total: int) -> dict[str, int]:
        return {"invoiced": total}

    @receiver(TICK)
    async def tick(self, n: int) -> None:
        pass

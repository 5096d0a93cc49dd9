"""Seed 002's exercise: routed calculation tasks, results in a log file, failures dead-lettered.

Flow of one task::

    CalcProducer --publish to topic exchange "calc", routing key "calc.div"-->
        queue "div"   (bound to "calc.div")  --> DivAgent: the result goes to the log file,
                                                  or Reject: the task goes to div's dead letters
        queue "audit" (bound to "#")         --> AuditAgent: every task, whatever its key
    DeadLetterWatcher lists the operation queues' dead letters and logs each new one.

Every agent writes to one log file (setting ``log``, default ``calc.log``), one line each::

    <time> sent     n=7 id=<message id> calc.div a=9 b=0
    <time> audit    n=7 id=<message id> calc.div a=9 b=0
    <time> rejected n=7 id=<message id> calc.div: division by zero
    <time> dead     n=7 id=<message id> div: Reject: division by zero (attempt 1)
    <time> result   n=8 id=<message id> 3 * -4 = -12

Agent settings (the same for every agent): ``log`` (path), ``seed`` (int), ``count`` (tasks
to publish, then stop publishing; default no end), ``batch`` (tasks per 0.5 s tick),
``strings`` (the consumers accept numbers sent as strings: the "fixed" consumer that dead
letters are requeued to in the README).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from examples.runner import require_routing
from microhive import MicroAgent, consumer, current_message, load_stuff, on, periodic
from microhive.broker import DeadLetter

from .calculator import OPERATIONS, Calculator, log_file, operands

CATALOG_FILE = Path(__file__).resolve().parent / "calc.json"
CATALOG = load_stuff(CATALOG_FILE)
signals, queues = CATALOG

EXCHANGE = "calc"
BAD_OPERANDS: tuple[Any, ...] = ("seven", "7", "2.5", None, "", True, [1, 2], {"x": 1})
"""What the producer sometimes sends instead of a number, so the consumers must reject it
(the numbers in strings are accepted by consumers run with the setting ``strings``)."""


class CalcProducer(MicroAgent):
    """Publishes ``batch`` random tasks every 0.5 s through the topic exchange ``calc``.

    About three tasks in ten have a zero second operand (a division by zero, when the task is
    a division), and about one in seven carries an operand that is not a number.
    """

    catalog = CATALOG  # publishes to the exchange its queues are bound to

    @on("pre_start")
    def setup(self) -> None:
        require_routing(self)
        self.random = random.Random(self.settings.get("seed"))
        count = self.settings.get("count")
        self.count: int | None = None if count is None else int(count)
        self.batch = int(self.settings.get("batch", 1))
        self.sent = 0
        self.out = log_file(self)

    @on("post_stop")
    def close(self) -> None:
        self.out.close()

    def task(self) -> tuple[str, Any, Any]:
        operation = self.random.choice(sorted(OPERATIONS))
        a: Any = self.random.randint(-20, 20)
        b: Any = 0 if self.random.random() < 0.3 else self.random.randint(-20, 20)
        if self.random.random() < 0.15:
            bad = self.random.choice(BAD_OPERANDS)
            a, b = (bad, b) if self.random.random() < 0.5 else (a, bad)
        return operation, a, b

    @periodic(0.5, timeout=10)
    async def publish_tasks(self) -> None:
        for _ in range(self.batch):
            if self.count is not None and self.sent >= self.count:
                return
            operation, a, b = self.task()
            self.sent += 1
            key = f"calc.{operation}"
            message_id = await self.broker.publish(
                EXCHANGE, {"n": self.sent, "a": a, "b": b}, routing_key=key
            )
            self.out.write("sent", f"n={self.sent} id={message_id} {key} {operands(a, b)}")
            self.log.info("task %d: %s %s", self.sent, key, operands(a, b))


class AddAgent(Calculator):
    operation = "add"

    @consumer(queues.add, timeout=10)
    async def compute(self, n: int, a: Any, b: Any) -> None:
        self.solve(n, a, b)


class SubAgent(Calculator):
    operation = "sub"

    @consumer(queues.sub, timeout=10)
    async def compute(self, n: int, a: Any, b: Any) -> None:
        self.solve(n, a, b)


class MulAgent(Calculator):
    operation = "mul"

    @consumer(queues.mul, timeout=10)
    async def compute(self, n: int, a: Any, b: Any) -> None:
        self.solve(n, a, b)


class DivAgent(Calculator):
    operation = "div"

    @consumer(queues.div, timeout=10)
    async def compute(self, n: int, a: Any, b: Any) -> None:
        self.solve(n, a, b)


class AuditAgent(MicroAgent):
    """Sees every task: its queue is bound to the exchange with ``#``."""

    @on("pre_start")
    def setup(self) -> None:
        self.out = log_file(self)

    @on("post_stop")
    def close(self) -> None:
        self.out.close()

    @consumer(queues.audit, timeout=10)
    async def record(self, n: Any = None, a: Any = None, b: Any = None, **extra: Any) -> None:
        message = current_message()
        assert message is not None  # always set inside a consumer
        key = message.headers.get("x-routing-key", "?")
        self.out.write("audit", f"n={json.dumps(n)} id={message.id} {key} {operands(a, b)}")


class DeadLetterWatcher(MicroAgent):
    """Logs every new dead letter of the operation queues, every second and once more at stop.

    It only looks (``list``), so ``microhive dlq requeue|purge`` still find them all; on
    ``memory://``, where no other process can look, this is how the dead letters are seen.
    """

    catalog = CATALOG  # reads the operation queues' dead letters without consuming them

    @on("pre_start")
    def setup(self) -> None:
        require_routing(self)  # it starts first: a wrong URL stops the example before anything runs
        self.out = log_file(self)
        self.seen: set[tuple[str, str, float]] = set()

    @on("post_stop")
    async def close(self) -> None:
        await self.look()  # listed after the consumers: they have stopped by now
        self.out.close()

    @periodic(1, timeout=30)
    async def look(self) -> None:
        for operation in sorted(OPERATIONS):
            for letter in await self.broker.queue(operation).dead.list(1000):
                self.show(operation, letter)

    def show(self, operation: str, letter: DeadLetter) -> None:
        envelope = letter.envelope
        message_id = envelope.id if envelope is not None else "(undecodable)"
        key = (operation, message_id, letter.dead_at)
        if key in self.seen:
            return
        self.seen.add(key)
        payload = envelope.payload if envelope is not None else None
        n = payload.get("n") if isinstance(payload, dict) else None
        text = f"{operation}: {letter.reason} (attempt {letter.attempt})"
        self.out.write("dead", f"n={json.dumps(n)} id={message_id} {text}")
        self.log.warning("dead letter of %s: task %s, %s", operation, n, letter.reason)


AGENTS: tuple[type[MicroAgent], ...] = (
    CalcProducer,
    AuditAgent,
    AddAgent,
    SubAgent,
    MulAgent,
    DivAgent,
    DeadLetterWatcher,
)
"""Upstream first: the producer starts last and stops first, the watcher stops last."""

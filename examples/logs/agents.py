"""Practice 1 of seed 003: a generator of two message types and two logger clients.

::

    LogGenerator --publish to topic exchange "logs", key "log.info" or "log.error"-->
        queue "all_logs"   (bound to "log.*")     --> AllLogger   --> all.log
        queue "error_logs" (bound to "log.error") --> ErrorLogger --> errors.log

The generator writes what it sent to ``sent.log``; every file is in the directory of the
setting ``dir`` (default: the current one). One line per message::

    <time> error    n=4 id=<message id> disk /var is 97% full

Agent settings (the same for every agent): ``dir``, ``seed`` (int), ``count`` (messages to
send, then stop sending; default no end), ``batch`` (messages per 0.5 s tick).
"""

from __future__ import annotations

import random
from pathlib import Path

from examples.runner import require_routing
from microhive import MicroAgent, consumer, load_stuff, on, periodic

from .logger import Logger, log_file

CATALOG_FILE = Path(__file__).resolve().parent / "logs.json"
CATALOG = load_stuff(CATALOG_FILE)
signals, queues = CATALOG

EXCHANGE = "logs"
MESSAGES = {
    "info": ("user {user} logged in", "report for {user} is ready", "cache warmed in {ms} ms"),
    "error": ("disk /var is {pct}% full", "payment for {user} failed", "timeout after {ms} ms"),
}
"""The two message types (the last word of the routing key) and what they say."""
USERS = ("ann", "bob", "carol", "dave")


class LogGenerator(MicroAgent):
    """Sends ``batch`` messages every 0.5 s: about one in three is an error."""

    catalog = CATALOG  # publishes to the exchange its queues are bound to

    @on("pre_start")
    def setup(self) -> None:
        require_routing(self)
        self.random = random.Random(self.settings.get("seed"))
        count = self.settings.get("count")
        self.count: int | None = None if count is None else int(count)
        self.batch = int(self.settings.get("batch", 1))
        self.sent = 0
        self.out = log_file(self, "sent.log")

    @on("post_stop")
    def close(self) -> None:
        self.out.close()

    @periodic(0.5, timeout=10)
    async def generate(self) -> None:
        for _ in range(self.batch):
            if self.count is not None and self.sent >= self.count:
                return
            level = "error" if self.random.random() < 1 / 3 else "info"
            text = self.random.choice(MESSAGES[level]).format(
                user=self.random.choice(USERS),
                ms=self.random.randint(5, 5000),
                pct=self.random.randint(90, 100),
            )
            self.sent += 1
            message_id = await self.broker.publish(
                EXCHANGE, {"n": self.sent, "text": text}, routing_key=f"log.{level}"
            )
            self.out.write(level, f"n={self.sent} id={message_id} {text}")


class AllLogger(Logger):
    """Subscribed to both types (``log.*``)."""

    file_name = "all.log"

    @consumer(queues.all_logs, timeout=10)
    async def receive(self, n: int, text: str) -> None:
        self.print(n, text)


class ErrorLogger(Logger):
    """Subscribed to errors only (``log.error``)."""

    file_name = "errors.log"

    @consumer(queues.error_logs, timeout=10)
    async def receive(self, n: int, text: str) -> None:
        self.print(n, text)


AGENTS: tuple[type[MicroAgent], ...] = (LogGenerator, AllLogger, ErrorLogger)
"""Upstream first: the generator starts last and stops first."""

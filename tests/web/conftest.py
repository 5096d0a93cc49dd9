"""Fixtures for the web integration tests: a bus and broker URL per engine (a namespace of
the test's own, deleted after), the agent a web app runs, and plain HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from microhive import MicroAgent, Queue, Signal, consumer, receiver
from microhive.envelope import new_id

from .. import engines

JOBS = Queue("web_jobs")
PING = Signal("web_ping", providing_args=["name"])


class Echo(MicroAgent):
    """What a web app's agent does: consumes a queue, answers a call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.done: list[int] = []
        self.pinged: list[str] = []

    @consumer(JOBS)
    async def job(self, n: int) -> None:
        self.done.append(n)

    @receiver(PING)
    async def ping(self, name: str) -> str:
        self.pinged.append(name)
        return f"pong {name}"


@dataclass(frozen=True)
class Urls:
    bus: str
    broker: str


ENGINES = ["memory", "redis", "kafka"]


@pytest.fixture(params=ENGINES)
async def urls(request: pytest.FixtureRequest) -> AsyncIterator[Urls]:
    prefix = f"mhweb_{new_id()[:10]}"
    if request.param == "memory":
        yield Urls(f"memory://{prefix}", f"memory://{prefix}")
    elif request.param == "redis":
        base = engines.require_redis()
        url = engines.with_query(base, prefix=f"{prefix}:")
        yield Urls(url, url)
        await engines.delete_prefix(base, prefix)
    else:
        base = engines.require_kafka()
        url = engines.with_query(base, prefix=prefix, **engines.KAFKA_TEST_OPTIONS)
        yield Urls(f"memory://{prefix}", url)  # Kafka has no signals: the bus is another one
        await engines.delete_kafka_prefix(url, prefix)


async def fetch(url: str, payload: Any = None) -> Any:
    """GET (or POST ``payload`` as JSON) in a thread; the decoded JSON answer."""

    def request() -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data else {}
        with urllib.request.urlopen(
            urllib.request.Request(url, data=data, headers=headers), timeout=60
        ) as answer:
            return json.loads(answer.read())

    return await asyncio.to_thread(request)

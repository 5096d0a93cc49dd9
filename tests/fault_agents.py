"""Agents and a producer that the engines' fault tests run as separate processes.

``microhive run tests.fault_agents:Recorder --transport redis://...`` (or nats://...)
consumes the ``jobs`` queue; every message it processed is appended to
``$MH_TEST_RECORD.<pid>`` (one line per processing, written before the ack, so a SIGKILL
never hides a processed message).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import IO, Any

from microhive import MicroAgent, Queue, QueueBroker, Signal, TransportError, consumer, receiver

JOBS = Queue("jobs")
PING = Signal("ping", ["n"])

_files: dict[str, IO[str]] = {}


def record(line: str) -> None:
    path = os.environ.get("MH_TEST_RECORD")
    if not path:
        return
    file = _files.get(path)
    if file is None:
        file = _files[path] = open(f"{path}.{os.getpid()}", "a", buffering=1)  # noqa: SIM115
    file.write(f"{line}\n")


class Recorder(MicroAgent):
    @consumer(JOBS, concurrency=8)
    async def job(self, n: int, pause: float = 0.0) -> None:
        if pause:
            await asyncio.sleep(pause)
        record(str(n))

    @receiver(PING)
    async def ping(self, n: int) -> dict[str, Any]:
        return {"pid": os.getpid(), "n": n}


async def produce(
    url: str, first: int, count: int, path: str, concurrency: int, pause: float
) -> None:
    """Send ``first..first+count-1``; each one the broker acknowledged goes to ``path.acked``."""
    acked = open(f"{path}.acked", "a", buffering=1)  # noqa: SIM115, ASYNC230
    failed = open(f"{path}.failed", "a", buffering=1)  # noqa: SIM115, ASYNC230
    async with QueueBroker.from_url(url, queues=[JOBS]) as broker:

        async def sender(start: int) -> None:
            for n in range(first + start, first + count, concurrency):
                try:
                    await broker.jobs.send({"n": n})
                except TransportError as exc:
                    failed.write(f"{n} {exc}\n")
                else:
                    acked.write(f"{n}\n")
                await asyncio.sleep(pause)

        await asyncio.gather(*(sender(k) for k in range(concurrency)))
    print("producer done", flush=True)


if __name__ == "__main__":  # python -m tests.fault_agents URL FIRST COUNT PATH [CONCURRENCY PAUSE]
    url, first, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    concurrency = int(sys.argv[5]) if len(sys.argv) > 5 else 4
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    asyncio.run(produce(url, first, count, path, concurrency, pause))

"""A process that requeues every dead letter of ``nrqsource`` to ``nrqtarget`` (the SIGKILL
test of tests/nats/test_requeue_killed.py kills it in the middle).

    python -m tests.nats.requeuer URL
"""

from __future__ import annotations

import asyncio
import sys

from microhive import Queue, QueueBroker

SOURCE = Queue("nrqsource")
TARGET = Queue("nrqtarget")


async def main(url: str) -> None:
    async with QueueBroker.from_url(url, queues=[SOURCE, TARGET]) as broker:
        print("requeuing", flush=True)
        moved = await broker.nrqsource.dead.requeue(to="nrqtarget")
        print(f"requeued {moved}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

"""A process that requeues a queue's dead letters, for the SIGKILL test of requeue.

python -m tests.kafka.requeuer URL QUEUE TO CHUNK
"""

from __future__ import annotations

import asyncio
import sys

from microhive import QueueBroker
from microhive.transports.kafka import KafkaBroker


async def main(url: str, queue: str, to: str, chunk: int) -> None:
    broker = QueueBroker.from_url(url)
    assert isinstance(broker, KafkaBroker)
    broker._dead.chunk = chunk
    async with broker:
        print("requeuing", flush=True)
        moved = await broker.requeue(queue, to=to)
        print(f"requeued {moved}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))

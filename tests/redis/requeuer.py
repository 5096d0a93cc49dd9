"""A process that requeues every dead letter of ``jobs`` into ``done`` (the SIGKILL test
in test_requeue_killed.py kills it half-way): ``python -m tests.redis.requeuer <url>``."""

from __future__ import annotations

import asyncio
import sys

from microhive import QueueBroker


async def main(url: str) -> None:
    async with QueueBroker.from_url(url) as broker:
        print("requeuing", flush=True)
        moved = await broker.requeue("jobs", to="done")
        print(f"requeued {moved}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

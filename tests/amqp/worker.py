"""A consumer process for fault tests.

``python -m tests.amqp.worker URL QUEUE OUTPUT CONCURRENCY``: consumes ``QUEUE`` with a
microhive agent and appends each message's ``n`` to ``OUTPUT`` (one ``os.write`` per line,
so a SIGKILL loses nothing that was written) before the handler returns and the message is
acknowledged. Prints ``ready`` once consuming; SIGTERM stops it gracefully (exit 0).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from microhive import MicroAgent, Queue, QueueBroker, consumer


def main() -> None:
    url, queue_name, output, concurrency = sys.argv[1:5]
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    queue = Queue(queue_name)

    class Worker(MicroAgent):
        @consumer(queue, concurrency=int(concurrency))
        async def work(self, n: int) -> None:
            os.write(fd, f"{n}\n".encode())

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        broker = QueueBroker.from_url(url, queues=[queue])
        async with Worker(broker=broker, grace_period=5):
            print("ready", flush=True)
            await stop.wait()
        await broker.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()

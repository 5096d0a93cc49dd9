"""Delete what a run created on one engine: every name that contains the run's token.

    python cleanup.py redis|amqp|nats TOKEN

RabbitMQ has no listing in AMQP itself: queues and exchanges are listed with ``rabbitmqctl``
when it is there (a local broker), and deleted through AMQP.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

from harness import URLS


def redis(token: str) -> int:
    import redis as redis_py

    client = redis_py.Redis.from_url(URLS["redis"])
    keys = list(client.scan_iter(match=f"*{token}*", count=1000))
    if keys:
        client.delete(*keys)
    deleted = len(keys)
    # Celery's shared bookkeeping: bindings of our queues, and deliveries a stopped worker
    # had taken (the transport would put them back in our queue after its visibility timeout)
    for key in client.scan_iter(match="_kombu.binding.*", count=1000):
        if client.type(key) == b"set":
            ours = [m for m in client.smembers(key) if token.encode() in m]
            deleted += client.srem(key, *ours) if ours else 0
    if client.type("unacked") == b"hash":
        for tag, body in client.hscan_iter("unacked"):
            if token.encode() in body:
                deleted += client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    return deleted


def _listed(kind: str, token: str) -> list[str]:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        print("rabbitmqctl not found: queues and exchanges left in place", file=sys.stderr)
        return []
    listing = subprocess.run(
        [tool, "-q", f"list_{kind}", "name"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return [name for name in listing.stdout.split() if token in name]


def amqp(token: str) -> int:
    import pika

    queues, exchanges = _listed("queues", token), _listed("exchanges", token)
    if not queues and not exchanges:
        return 0
    connection = pika.BlockingConnection(pika.URLParameters(URLS["amqp"]))
    channel = connection.channel()
    for name in queues:
        channel.queue_delete(name)
    for name in exchanges:
        channel.exchange_delete(name)
    connection.close()
    return len(queues) + len(exchanges)


async def _nats(token: str) -> int:
    import nats

    client = await nats.connect(URLS["nats"])
    js = client.jetstream()
    deleted = 0
    for info in await js.streams_info():
        if token in info.config.name:
            await js.delete_stream(info.config.name)
            deleted += 1
    await client.close()
    return deleted


def main() -> None:
    engine, token = sys.argv[1:3]
    if len(token) < 8:
        raise SystemExit("refusing a token shorter than 8 characters")
    deleted = {"redis": redis, "amqp": amqp, "nats": lambda t: asyncio.run(_nats(t))}[engine](token)
    print(f"cleanup {engine}: {deleted} deleted ({token})")


if __name__ == "__main__":
    main()

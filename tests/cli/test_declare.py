"""``microhive declare``: a catalog's queues exist before any consumer, so a plain publisher's
messages are kept (RabbitMQ drops what is published to a queue nobody declared)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pika

from microhive import Namespace, Queue, QueueBroker, private_catalog
from microhive.envelope import new_id

from ..amqp import server as amqp_server
from .helpers import run


async def test_declare_then_a_plain_publisher_then_a_consumer(tmp_path: Path) -> None:
    amqp_server.require_amqp()
    url = amqp_server.contract_url(f"decl{new_id()[:8]}")
    prefix = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))["prefix"]
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"version": 1, "queues": [{"name": "registrations"}]}))
    result = run("-m", "microhive", "declare", "--broker", url, "--catalog", str(catalog))
    assert result.returncode == 0, result.stderr
    assert "declared registrations" in result.stdout
    assert "guest:guest" not in result.stdout

    def publish() -> None:  # the seed's registrar: a plain pika publisher
        parameters = pika.URLParameters(url.split("?", 1)[0])
        connection = pika.BlockingConnection(parameters)
        try:
            channel = connection.channel()
            channel.basic_publish(
                exchange="",
                routing_key=f"{prefix}registrations",
                body=json.dumps({"name": "ann"}).encode(),
                properties=pika.BasicProperties(delivery_mode=2),
            )
        finally:
            connection.close()

    await asyncio.to_thread(publish)
    with private_catalog():
        broker = QueueBroker.from_url(url, queues=Namespace([Queue("registrations")], kind="queue"))
    async with broker:
        assert await broker.registrations.length() == 1, "kept, though no consumer ever ran"


def test_declare_with_nothing_to_declare_says_so() -> None:
    result = run("-m", "microhive", "declare", "--broker", "memory://")
    assert result.returncode == 2
    assert "nothing to declare" in result.stderr

"""Interoperability with services that do not use microhive: plain pika and aio-pika.

The seed's registrar publishes employee events to a durable queue with pika (and aio-pika)
exactly as below; a microhive consumer must take them, with the AMQP message id and app id
available to the handler and in the log context. And a message microhive sends must be
readable by a plain aio-pika consumer: JSON body, metadata in standard properties.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from uuid import uuid4

import aio_pika
import pika
import pytest

from microhive import MicroAgent, consumer, current_message

from .conftest import QUEUES, Opened, eventually, plain_url, prefix_of


def registrar_publish(url: str, queue: str, data: Any, message_id: str) -> None:
    """The seed's ``publish_to_events_feed``, with plain pika (a synchronous service)."""
    parameters = pika.URLParameters(url)
    with pika.BlockingConnection(parameters) as connection:
        channel = connection.channel()
        properties = pika.BasicProperties(
            delivery_mode=pika.DeliveryMode.Persistent.value,
            content_type="application/json",
            content_encoding="utf-8",
            message_id=message_id or uuid4().hex,
            app_id="registrar",
        )
        channel.basic_publish(
            exchange="",
            routing_key=queue,
            body=json.dumps(data).encode(),
            properties=properties,
        )


class Feed(MicroAgent):
    @consumer(QUEUES.events_feed, concurrency=2)
    async def create_event(self, **event: Any) -> None:
        message = current_message()
        assert message is not None
        self.log.info("message is being processed")
        self.settings["got"].append((event, message.id, message.sender))


async def test_pika_registrar_to_microhive_consumer(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="microhive.agent.Feed")
    broker = await opened.broker()
    queue = prefix_of(opened.url) + "events_feed"
    agent = Feed(broker=broker, settings={"got": []})
    async with agent:  # declares the queue; the registrar only publishes
        message_id = uuid4().hex
        event = {"event": "new_employee", "name": "Ann", "kind": "hire"}
        await asyncio.to_thread(registrar_publish, plain_url(opened.url), queue, event, message_id)
        await eventually(lambda: agent.settings["got"])
    assert agent.settings["got"] == [(event, message_id, "registrar")]
    [record] = [r for r in caplog.records if r.getMessage() == "message is being processed"]
    assert record.microhive["msg"] == message_id  # type: ignore[attr-defined]
    assert record.microhive["sender"] == "registrar"  # type: ignore[attr-defined]
    assert f"msg={message_id}" in record.context  # type: ignore[attr-defined]
    assert await broker.events_feed.length() == 0


async def test_aio_pika_publisher_to_microhive_consumer(opened: Opened) -> None:
    """The seed's ``_publish_events`` with aio-pika (an asyncio service)."""
    broker = await opened.broker()
    queue = prefix_of(opened.url) + "events_feed"
    agent = Feed(broker=broker, settings={"got": []})
    async with agent:
        connection = await aio_pika.connect_robust(plain_url(opened.url))
        async with connection:
            channel = await connection.channel()
            message = aio_pika.Message(
                body=json.dumps({"event": "thanks", "to": "Bob"}).encode(),
                content_type="application/json",
                content_encoding="utf-8",
                message_id="m-42",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                app_id="portal",
            )
            await channel.default_exchange.publish(message, routing_key=queue)
        await eventually(lambda: agent.settings["got"])
    assert agent.settings["got"] == [({"event": "thanks", "to": "Bob"}, "m-42", "portal")]


async def test_foreign_bad_json_is_dead_lettered(opened: Opened) -> None:
    broker = await opened.broker()
    queue = prefix_of(opened.url) + "events_feed"
    agent = Feed(broker=broker, settings={"got": []})
    async with agent:
        await asyncio.to_thread(registrar_publish, plain_url(opened.url), queue, {"a": 1}, "ok-1")
        connection = await aio_pika.connect(plain_url(opened.url))
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(b"{not json", message_id="bad-1"), routing_key=queue
            )
        letters = await eventually(broker.events_feed.dead_letters)
        await eventually(lambda: agent.settings["got"])
    [letter] = letters
    assert letter.reason.startswith("undecodable message") and letter.raw == b"{not json"


async def test_microhive_message_read_by_plain_aio_pika(opened: Opened) -> None:
    broker = await opened.broker()
    queue = prefix_of(opened.url) + "jobs"
    message_id = await broker.jobs.send({"n": 1}, headers={"trace": "t-1"}, sender="registrar")
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        incoming = await declared.get(timeout=5)
        assert incoming is not None
        async with incoming.process():
            document = json.loads(incoming.body)
            assert document["payload"] == {"n": 1}
            assert document["id"] == message_id and document["kind"] == "message"
            assert incoming.message_id == message_id
            assert incoming.app_id == "registrar"
            assert incoming.content_type == "application/json"
            assert incoming.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
            assert incoming.type == "message"
            assert incoming.headers["trace"] == "t-1"
            assert incoming.timestamp is not None
    assert await broker.jobs.length() == 0


async def test_message_rejected_by_a_plain_consumer_lands_in_the_dead_letter_queue(
    opened: Opened,
) -> None:
    """With ``declare=arguments`` the queue's dead-letter exchange catches what other clients
    reject: nothing is lost (plainly declared queues drop it, docs/transports/amqp.md)."""
    broker = await opened.broker(opened.url + "&declare=arguments")
    queue = prefix_of(opened.url) + "jobs"
    await broker.jobs.send({"n": 5})
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        incoming = await declared.get(timeout=5)
        assert incoming is not None
        await incoming.reject(requeue=False)
    [letter] = await eventually(broker.jobs.dead_letters)
    assert letter.reason == "rejected (by RabbitMQ)"
    assert letter.envelope is not None and letter.envelope.payload == {"n": 5}
    assert letter.attempt == 1


async def test_plain_aio_pika_consumer_as_in_the_seed(opened: Opened) -> None:
    """The seed's worker loop (``async for message in queue``, ``message.process()``) reads
    what microhive sends; it only has to declare the queue passively."""
    broker = await opened.broker()
    queue = prefix_of(opened.url) + "events_feed"
    sent = [await broker.events_feed.send({"n": n}, sender="registrar") for n in range(3)]
    seen: list[tuple[str | None, str | None, Any]] = []
    connection = await aio_pika.connect_robust(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        declared = await channel.declare_queue(queue, passive=True)
        async with declared.iterator() as messages:
            async for message in messages:
                async with message.process():
                    context = {"service_name": message.app_id, "task_id": message.message_id}
                    data = json.loads(message.body.decode())
                    seen.append((context["service_name"], context["task_id"], data["payload"]))
                if len(seen) == 3:
                    break
    assert seen == [("registrar", message_id, {"n": n}) for n, message_id in enumerate(sent)]

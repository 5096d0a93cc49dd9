"""The memory transport routes like RabbitMQ: random topic bindings and keys, both engines."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microhive.envelope import new_id
from microhive.transports.memory.routing import topic_matches

from . import server

WORD = st.sampled_from(["a", "b", "c", ""])
KEY = st.lists(WORD, max_size=5).map(".".join)
PATTERN = st.lists(st.one_of(WORD, st.sampled_from(["*", "#"])), max_size=5).map(".".join)


@pytest.fixture(scope="module")
def channel() -> Iterator[pika.adapters.blocking_connection.BlockingChannel]:
    url = server.require_amqp()
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.confirm_delivery()
    try:
        yield channel
    finally:
        connection.close()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    patterns=st.lists(PATTERN, min_size=1, max_size=4), keys=st.lists(KEY, min_size=1, max_size=4)
)
def test_topic_routing_agrees_with_rabbitmq(channel, patterns: list[str], keys: list[str]) -> None:  # type: ignore[no-untyped-def]
    exchange = f"agree-{new_id()[:12]}"
    channel.exchange_declare(exchange, exchange_type="topic", auto_delete=True)
    queues = []
    for pattern in patterns:
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, exchange, routing_key=pattern)
        queues.append(queue)
    for index, key in enumerate(keys):
        channel.basic_publish(exchange, key, str(index).encode())
    try:
        for queue, pattern in zip(queues, patterns, strict=True):
            got = []
            while True:
                method, _, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                got.append(keys[int(body)])
            expected = [key for key in keys if topic_matches(pattern, key)]
            assert got == expected, f"pattern {pattern!r}: RabbitMQ {got}, memory {expected}"
    finally:
        for queue in queues:
            channel.queue_delete(queue)
        channel.exchange_delete(exchange)

"""What the AMQP transport does beyond the contract: its topology, limits, confirms, options."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed

from microhive import (
    ConfigurationError,
    MicroAgent,
    QueueBroker,
    SignalBus,
    TransportError,
    UnroutableError,
    consumer,
    current_message,
)
from microhive.transports.amqp import (
    AmqpBroker,
    AmqpBus,
    Limits,
    LinkDown,
    QueueFull,
)
from microhive.transports.amqp.options import delay_bucket, parse
from microhive.transports.amqp.topology import refusal
from microhive.transports.links import CONNECT_TIMEOUT
from microhive.transports.links import LinkDown as SharedLinkDown

from . import server
from .conftest import QUEUES, Opened, eventually, plain_url, prefix_of


def test_link_down_is_the_shared_class() -> None:
    assert LinkDown is SharedLinkDown


def test_url_options_and_errors() -> None:
    options = parse(
        "amqp://u:pw@h:5673/v?prefix=p.&max_length=10&overflow=reject-publish&heartbeat=5"
    )
    assert options.prefix == "p." and options.max_length == 10
    assert options.connection_url == "amqp://u:pw@h:5673/v?heartbeat=5"
    assert options.queue("jobs") == "p.jobs" and options.dead("jobs") == "p.jobs:dead"
    assert options.limits.arguments() == {"x-max-length": 10, "x-overflow": "reject-publish"}
    with pytest.raises(ConfigurationError, match="unknown option 'nope'") as caught:
        parse("amqp://u:pw@h/?nope=1")
    assert "pw" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="overflow"):
        parse("amqp://h/?overflow=drop-tail")
    with pytest.raises(ConfigurationError, match="must be an integer"):
        parse("amqp://h/?max_length=ten")
    with pytest.raises(ConfigurationError, match="overflow"):
        Limits(5, overflow="never")
    assert isinstance(QueueBroker.from_url("amqps://h/"), AmqpBroker)
    assert isinstance(SignalBus.from_url("amqp://h/"), AmqpBus)


@pytest.mark.parametrize(
    "seconds, bucket",
    [
        (0, 1),
        (0.0004, 1),
        (0.05, 50),
        (0.3, 300),
        (0.123, 130),
        (1.234, 1300),
        (16, 16000),
        (0.999, 1000),
        (299.5, 300000),
    ],
)
def test_delays_round_up_to_two_significant_digits(seconds: float, bucket: int) -> None:
    assert delay_bucket(seconds) == bucket
    assert delay_bucket(seconds) >= seconds * 1000
    assert delay_bucket(seconds) <= max(1, seconds * 1000 * 1.1 + 1)


async def test_one_connection_per_process(opened: Opened) -> None:
    first = await opened.broker()
    second = await opened.broker()
    bus = await opened.bus()
    assert isinstance(first, AmqpBroker) and isinstance(second, AmqpBroker)
    assert isinstance(bus, AmqpBus)
    assert first.link is second.link is bus.link
    assert first.link.refs == 3


async def test_prefetch_is_the_consumer_concurrency(opened: Opened) -> None:
    """basic.qos: a consumer holds at most ``concurrency`` messages; the rest stay ready for
    other consumers (fair dispatch)."""
    gate = asyncio.Event()
    running = []

    class Slow(MicroAgent):
        @consumer(QUEUES.jobs, concurrency=3)
        async def job(self, n: int) -> None:
            running.append(n)
            await gate.wait()

    broker = await opened.broker()
    for n in range(10):
        await broker.jobs.send({"n": n})
    async with Slow(broker=broker):
        await eventually(lambda: len(running) == 3)
        await asyncio.sleep(0.2)
        assert isinstance(broker, AmqpBroker)
        ready = await broker.topology.count(broker.options.queue("jobs"))
        assert ready == 7, "only three were delivered"
        gate.set()
        await eventually(lambda: len(running) == 10)


async def test_deliveries_go_from_the_connection_reader_to_the_consumer(opened: Opened) -> None:
    """reader.deliver_directly: a consumer's deliveries are handed on by the connection's
    frame reader; aiormq's per-channel reader (where take_directly's hook sits) sees none."""
    from microhive.transports.amqp import reader

    got: list[int] = []

    class Worker(MicroAgent):
        @consumer(QUEUES.jobs, concurrency=4)
        async def job(self, n: int) -> None:
            got.append(n)

    broker = await opened.broker()
    await broker.jobs.send({"n": -1})
    async with Worker(broker=broker):
        await eventually(lambda: got == [-1])  # consuming: whatever came before registration
        assert isinstance(broker, AmqpBroker)
        [worker] = broker.consumers
        channel = worker.channel
        assert channel is not None
        receiver = reader._RECEIVERS[channel.connection]
        assert receiver.direct[channel.number].channel is channel
        through_aiormq = []
        hook = channel._on_deliver_frame

        async def counted(frame: object) -> None:
            through_aiormq.append(frame)
            await hook(frame)

        channel._on_deliver_frame = counted
        for n in range(20):
            await broker.jobs.send({"n": n})
        await eventually(lambda: sorted(got) == [-1, *range(20)])
        assert through_aiormq == []


async def test_confirms_are_pipelined(opened: Opened) -> None:
    broker = await opened.broker()
    assert isinstance(broker, AmqpBroker)
    await broker.jobs.send({"n": -1})
    pipeline = await broker.link.confirms()
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, pipeline.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.gather(*(broker.jobs.send({"n": n}) for n in range(2000)))
    finally:
        watcher.cancel()
    assert peak > 100, f"publishes waited for each other's confirms (peak {peak})"
    assert await broker.jobs.length() == 2001


async def test_reject_publish_overflow_raises_queue_full(opened: Opened) -> None:
    broker = await opened.broker(limits={"jobs": Limits(max_length=2, overflow="reject-publish")})
    await broker.jobs.send({"n": 1})
    await broker.jobs.send({"n": 2})
    with pytest.raises(QueueFull, match="full"):
        await broker.jobs.send({"n": 3})
    assert await broker.jobs.length() == 2


async def test_drop_head_overflow_dead_letters_the_oldest(opened: Opened) -> None:
    url = opened.url + "&max_length=2"
    broker = await opened.broker(url)
    for n in range(3):
        await broker.jobs.send({"n": n})
    assert await broker.jobs.length() == 2
    [letter] = await eventually(broker.jobs.dead_letters)
    assert letter.reason == "maxlen (by RabbitMQ)"
    assert letter.envelope is not None and letter.envelope.payload == {"n": 0}


async def test_a_deleted_queue_is_unroutable_then_declared_again(opened: Opened) -> None:
    broker = await opened.broker()
    assert isinstance(broker, AmqpBroker)
    await broker.jobs.send({"n": 1})
    channel = await broker.link.rpc()
    await channel.queue_delete(broker.options.queue("jobs"))
    with pytest.raises(UnroutableError, match="jobs"):
        await broker.jobs.send({"n": 2})
    await broker.jobs.send({"n": 3})
    assert await broker.jobs.length() == 1


async def test_queue_declared_elsewhere_without_arguments_is_used(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    """A queue the seed's worker declared (durable, no arguments) is the very queue microhive
    declares: no warning, and retries and dead letters work on it (they are republishes)."""
    queue = prefix_of(opened.url) + "events_feed"
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
    caplog.set_level(logging.WARNING, logger="microhive.amqp")
    done = []

    class Feed(MicroAgent):
        @consumer(QUEUES.events_feed, retries=1, backoff=0)
        async def event(self, n: int) -> None:
            if n == 2:
                raise ValueError("bad event")
            done.append(n)

    broker = await opened.broker()
    async with Feed(broker=broker):
        for n in range(3):
            await broker.events_feed.send({"n": n})
        await eventually(lambda: sorted(done) == [0, 1])
        [letter] = await eventually(broker.events_feed.dead_letters)
    assert "ValueError: bad event" in letter.reason and letter.attempt == 2
    assert "exists with other" not in caplog.text


async def test_exchange_type_conflict_is_a_clear_error(opened: Opened) -> None:
    from microhive import Exchange, Queue

    broker = await opened.broker()
    await broker.publish(
        Exchange("x", "fanout"), {"n": 1}, queues=[Queue("q", bindings=[Exchange("x", "fanout")])]
    )
    with pytest.raises(TransportError, match="another type"):
        await broker.publish(Exchange("x", "topic"), {"n": 1})
    await broker.jobs.send({"n": 1})  # the broker still works


async def test_the_name_option_is_the_connection_name_rabbitmq_shows(amqp_url: str) -> None:
    command = server.rabbitmqctl()
    if command is None:
        server.missing("rabbitmqctl is needed to read the server's view of connections")
    assert command is not None
    name = f"microhive-test-{prefix_of(amqp_url).rstrip('.')}"
    broker = QueueBroker.from_url(f"{amqp_url}&name={name}", queues=QUEUES)
    await broker.connect()
    try:
        listed = await asyncio.to_thread(
            subprocess.run,
            [*command, "list_connections", "client_properties", "--formatter", "json", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        await broker.close()
    names = [
        value
        for row in json.loads(listed.stdout)
        for key, _, value in row["client_properties"]
        if key == "connection_name"
    ]
    assert name in names


@pytest.mark.parametrize(
    "reply, expected",
    [
        (
            "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'topic' but "
            "current is 'fanout'",
            "exchange 'x' exists with another type than 'topic' (RabbitMQ: received 'topic' "
            "but current is 'fanout')",
        ),
        (
            "inequivalent arg 'durable' for exchange 'x' in vhost 'v': received 'true' but "
            "current is 'false'",
            "exchange 'x' exists with another 'durable' flag (RabbitMQ: received 'true' but "
            "current is 'false')",
        ),
        (
            "inequivalent arg 'x-max-length' for queue 'x' in vhost '/': received the value "
            "'3' of type 'byte' but current is none",
            "queue 'x' exists with another value of argument 'x-max-length' (RabbitMQ: "
            "received the value '3' of type 'byte' but current is none)",
        ),
        ("something else", "refused the declaration: PRECONDITION_FAILED - something else"),
    ],
)
def test_a_refused_declaration_names_what_differs(reply: str, expected: str) -> None:
    kind = "queue" if "queue" in reply else "exchange"
    error = ChannelPreconditionFailed(f"PRECONDITION_FAILED - {reply}")
    assert expected in refusal(kind, "x", error, "topic")


async def test_an_exchange_that_differs_in_durability_says_so(opened: Opened) -> None:
    from microhive import Exchange, Queue

    name = prefix_of(opened.url) + "notify"
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.declare_exchange(name, "fanout", durable=False, auto_delete=False)
        broker = await opened.broker()
        notify = Exchange("notify", "fanout")
        with pytest.raises(TransportError, match="another 'durable' flag") as caught:
            await broker.publish(notify, {"n": 1}, queues=[Queue("q", bindings=[notify])])
        assert "another type" not in str(caught.value)
        await channel.exchange_delete(name)
    await broker.jobs.send({"n": 1})  # the broker still works


async def test_a_transient_queue_of_that_name_is_refused_not_used(opened: Opened) -> None:
    """Persistent messages in a queue that does not survive a restart would be lost."""
    name = prefix_of(opened.url) + "jobs"
    connection = await aio_pika.connect(plain_url(opened.url))
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(name, durable=False)
        broker = await opened.broker()
        with pytest.raises(TransportError, match=f"queue '{name}' exists with another 'durable'"):
            await broker.jobs.send({"n": 1})
        await channel.queue_delete(name)
    await broker.jobs.send({"n": 1})
    assert await broker.jobs.length() == 1


async def test_connect_to_a_dead_port_gives_up_after_connect_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No server: connect() tries again and again (in a loop, never recursion) for
    ``connect_timeout`` in all, then raises LinkDown naming the budget, without the password.
    (The default budget is the one every engine shares, links.CONNECT_TIMEOUT.)"""
    caplog.set_level(logging.WARNING, logger="microhive.amqp")
    url = f"amqp://guest:secret-word@127.0.0.1:{server.free_port()}/?connect_timeout=1"
    assert parse(url.split("?", maxsplit=1)[0]).connect_timeout == CONNECT_TIMEOUT
    broker = QueueBroker.from_url(url, queues=QUEUES)
    with pytest.raises(LinkDown, match=r"could not connect to .* within 1 s \(connect_timeout\)"):
        await broker.jobs.send({"n": 1})
    caught = caplog.records[-1] if caplog.records else None
    assert caught is not None and "cannot reach RabbitMQ" in caught.getMessage()
    assert "secret-word" not in caplog.text
    with pytest.raises(LinkDown) as again:  # the link was released: a new one tries again
        await broker.connect()
    assert "secret-word" not in str(again.value)


async def test_acks_out_of_order_settle_everything_once(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    """Coalesced acks (one multiple ack for the settled head, single acks for the rest) with
    handlers finishing in random order, retries and returns mixed in: every message is
    handled once, the channel never fails (an ack of an unknown tag would close it)."""
    import random

    caplog.set_level(logging.WARNING, logger="microhive.amqp")
    done: list[int] = []

    class Shuffled(MicroAgent):
        @consumer(QUEUES.jobs, concurrency=16, retries=1, backoff=0)
        async def job(self, n: int) -> None:
            await asyncio.sleep(random.random() * 0.01)
            message = current_message()
            assert message is not None
            if n % 7 == 0 and message.attempt == 1:
                raise ValueError("retry me")
            done.append(n)

    broker = await opened.broker()
    assert isinstance(broker, AmqpBroker)
    await asyncio.gather(*(broker.jobs.send({"n": n}) for n in range(400)))
    async with Shuffled(broker=broker):
        await eventually(lambda: len(done) >= 400, 30)
        [consumer_] = broker.consumers
        assert consumer_.channel is not None
        direct = consumer_.channel._on_deliver_frame  # type: ignore[attr-defined]
        assert direct.__qualname__ == "take_directly.<locals>.on_deliver_frame", (
            "deliveries are taken without a task per message"
        )
        await eventually(lambda: _length_is(broker, 0))
    assert sorted(done) == list(range(400))
    assert "lost its channel" not in caplog.text


async def _length_is(broker: QueueBroker, expected: int) -> bool:
    return await broker.jobs.length() == expected


async def test_consumer_comes_back_after_its_queue_was_deleted(opened: Opened) -> None:
    """RabbitMQ cancels the consumers of a deleted queue; the consumer declares it again and
    consumes again by itself, with the connection up all along."""
    done: list[int] = []

    class Steady(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, n: int) -> None:
            done.append(n)

    broker = await opened.broker()
    assert isinstance(broker, AmqpBroker)
    async with Steady(broker=broker):
        await broker.jobs.send({"n": 1})
        await eventually(lambda: done == [1])
        channel = await broker.link.rpc()
        await channel.queue_delete(broker.options.queue("jobs"))
        await eventually(lambda: _sent(broker, 2), 15)
        await eventually(lambda: 2 in done, 15)
    assert done == [1, 2]


async def _sent(broker: QueueBroker, n: int) -> bool:
    try:
        await broker.jobs.send({"n": n})
    except UnroutableError:
        return False
    return True

"""The seeds' own plain-client code, run unchanged beside microhive agents (issue 12).

Seed 001 (an employee registrar feeding a company event feed): a pika ``BlockingConnection``
publisher, an aio-pika publisher and an aio-pika worker. Their functions are copied below as
the seed wrote them; only the configuration objects they read (``project.config``,
``_events_feed_config``, ``config``, ``settings``) point at this test's server and queue, and
``logger`` (loguru in the seed) and ``create_new_events`` (the seed's business logic) are
small stand-ins that record what they got.

The worker declares the queue plainly (``durable=True``): it must work whether it starts
before microhive declared the queue or after (before issue 12, microhive's dead-letter
arguments made the worker's declaration fail with PRECONDITION_FAILED).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any, Optional
from urllib.parse import urlparse
from uuid import uuid4

import aio_pika
import pika
import pytest
from aio_pika import exceptions
from pika import DeliveryMode

from microhive import MicroAgent, Namespace, Queue, consumer, current_message

from .conftest import QUEUES, Opened, eventually, plain_url, prefix_of

# -- the seed's environment, pointed at this test's queue -------------------------------------

project = SimpleNamespace(config=SimpleNamespace(application_name="registrar"))
_events_feed_config: dict[str, Any] = {"queue": {}}
config = SimpleNamespace(app_name="portal", events_feed_queue_dsn="", events_feed_queue_name="")
settings = SimpleNamespace(rabbitmq_dsn="", queue_name="", app_env="test")
AppEnvEnum = SimpleNamespace(local=SimpleNamespace(value="local"))
EVENTS: list[Any] = []


class _Logger:
    """loguru's ``info``/``error``/``contextualize``, recording (message, context)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.context: dict[str, Any] = {}

    def info(self, message: str) -> None:
        self.records.append((message, dict(self.context)))

    error = info

    @contextlib.contextmanager
    def contextualize(self, **context: Any) -> Iterator[None]:
        saved, self.context = self.context, {**self.context, **context}
        try:
            yield
        finally:
            self.context = saved


logger = _Logger()


async def create_new_events(data: Any) -> None:
    EVENTS.append(data)


class EventListModel:
    """The seed's pydantic model, as far as ``_publish_events`` uses it (``.json()``)."""

    def __init__(self, **fields: Any) -> None:
        self.fields = fields

    def json(self) -> str:
        return json.dumps(self.fields)


# -- seed 001, verbatim: the registrar's pika publisher ---------------------------------------


def _get_message_properties(message_id: Optional[str] = None):  # type: ignore[no-untyped-def]  # noqa: UP045
    return pika.BasicProperties(
        delivery_mode=DeliveryMode.Persistent.value,
        content_type="application/json",
        content_encoding="utf-8",
        message_id=message_id or uuid4().hex,
        app_id=project.config.application_name,
    )


def _create_connection():  # type: ignore[no-untyped-def]
    parsed = urlparse(_events_feed_config["queue"]["dsn"])
    credentials = pika.PlainCredentials(username=parsed.username, password=parsed.password)
    param = pika.ConnectionParameters(
        host=parsed.hostname,
        port=parsed.port,
        virtual_host=parsed.path[1:],
        credentials=credentials,
    )
    return pika.BlockingConnection(param)


def publish_to_events_feed(data, message_id):  # type: ignore[no-untyped-def]
    with _create_connection() as connection:
        channel = connection.channel()
        properties = _get_message_properties(message_id)
        logger.info("message is publishing")
        channel.basic_publish(
            exchange="",
            routing_key=_events_feed_config["queue"]["name"],
            body=json.dumps(data).encode(),
            properties=properties,
        )
        logger.info("message successfully published")


# -- seed 001, verbatim: the aio-pika publisher -----------------------------------------------


def _create_message(data: bytes, message_id: Optional[str] = None):  # type: ignore[no-untyped-def]  # noqa: UP045
    return aio_pika.Message(
        body=data,
        content_type="application/json",
        content_encoding="utf-8",
        message_id=message_id or uuid4().hex,
        delivery_mode=aio_pika.abc.DeliveryMode.PERSISTENT,
        app_id=config.app_name,
    )


async def _publish_events(data: EventListModel, message_id=None):  # type: ignore[no-untyped-def]
    connection = await aio_pika.connect_robust(config.events_feed_queue_dsn)
    async with connection:
        routing_key = config.events_feed_queue_name
        channel: aio_pika.abc.AbstractChannel = await connection.channel()
        message = _create_message(data.json().encode(), message_id)
        logger.info("message is publishing")
        await channel.default_exchange.publish(
            message,
            routing_key=routing_key,
        )
        logger.info("message successfully published")


# -- seed 001, verbatim: the aio-pika worker --------------------------------------------------


async def main():  # type: ignore[no-untyped-def]
    try:
        connection = await aio_pika.connect_robust(settings.rabbitmq_dsn)  # соединение с RabbitMQ  # noqa: RUF003
    except exceptions.CONNECTION_EXCEPTIONS as e:
        logger.error(e.args[0])
        await asyncio.sleep(3)
        return await main()  # запускаем бесконечный цикл, пока не подключится
    async with connection:
        channel: aio_pika.abc.AbstractChannel = await connection.channel()
        queue: aio_pika.abc.AbstractQueue = await channel.declare_queue(
            settings.queue_name, durable=True
        )
        logger.info("Starting consuming")
        while True:
            try:
                await consume(queue)  # начинаем слушать очередь
            except exceptions.CONNECTION_EXCEPTIONS as e:
                logger.error(e.args[0])
                return await main()
            except Exception as e:
                logger.error(e.args[0])


async def consume(queue):  # type: ignore[no-untyped-def]
    message: aio_pika.IncomingMessage
    async for message in queue:
        async with message.process():
            context = {
                "service_name": message.app_id,
                "task_id": message.message_id,
            }
            with logger.contextualize(**context):
                logger.info("message is being processing")
                data = json.loads(message.body.decode())
                await create_new_events(data)  # тут ваша бизнес логика
                logger.info("message successfully processed!")


# -- the tests -------------------------------------------------------------------------------


class Feed(MicroAgent):
    @consumer(QUEUES.events_feed, concurrency=2)
    async def create_event(self, **event: Any) -> None:
        message = current_message()
        assert message is not None
        self.settings["got"].append((event, message.id, message.sender, dict(message.headers)))


@pytest.fixture
def seed(opened: Opened) -> Iterator[str]:
    """Point the seed's configuration at this test's ``events_feed`` queue; its AMQP name."""
    queue = prefix_of(opened.url) + "events_feed"
    dsn = plain_url(opened.url)
    _events_feed_config["queue"] = {"dsn": dsn, "name": queue}
    config.events_feed_queue_dsn = dsn
    config.events_feed_queue_name = queue
    settings.rabbitmq_dsn = dsn
    settings.queue_name = queue
    EVENTS.clear()
    logger.records.clear()
    yield queue
    EVENTS.clear()


@contextlib.asynccontextmanager
async def worker() -> AsyncIterator[None]:
    """The seed's worker ``main()`` running, cancelled at the end (it never returns)."""
    task = asyncio.get_running_loop().create_task(main())
    try:
        await eventually(lambda: ("Starting consuming", {}) in logger.records or task.done())
        if task.done():
            task.result()  # its error, e.g. PRECONDITION_FAILED on declaring the queue
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_seed_pika_publisher_to_a_microhive_agent(opened: Opened, seed: str) -> None:
    broker = await opened.broker()
    agent = Feed(broker=broker, settings={"got": []})
    async with agent:
        event = {"event": "new_employee", "name": "Ann", "kind": "message"}
        await asyncio.to_thread(publish_to_events_feed, event, "m-1")
        await eventually(lambda: agent.settings["got"])
    [(payload, message_id, sender, headers)] = agent.settings["got"]
    assert (payload, message_id, sender) == (event, "m-1", "registrar")
    assert headers == {"x-routing-key": seed}, "the delivery's routing key reaches the handler"


async def test_seed_aio_pika_publisher_to_a_microhive_agent(opened: Opened, seed: str) -> None:
    broker = await opened.broker()
    agent = Feed(broker=broker, settings={"got": []})
    async with agent:
        await _publish_events(EventListModel(event="thanks", to="Bob"), "m-2")
        await eventually(lambda: agent.settings["got"])
    [(payload, message_id, sender, _)] = agent.settings["got"]
    assert (payload, message_id, sender) == ({"event": "thanks", "to": "Bob"}, "m-2", "portal")


async def _microhive_to_worker(opened: Opened, broker: Any) -> None:
    sent = [await broker.events_feed.send({"n": n}, sender="registrar") for n in range(3)]
    await eventually(lambda: len(EVENTS) == 3)
    assert [event["payload"] for event in EVENTS] == [{"n": 0}, {"n": 1}, {"n": 2}]
    contexts = [c for m, c in logger.records if m == "message successfully processed!"]
    assert contexts == [{"service_name": "registrar", "task_id": id_} for id_ in sent]
    assert await broker.events_feed.length() == 0


async def test_seed_worker_started_before_microhive(opened: Opened, seed: str) -> None:
    async with worker():  # declares the queue plainly first
        broker = await opened.broker()
        assert await broker.declare() == ["jobs", "events_feed"]  # the same declaration
        await _microhive_to_worker(opened, broker)


async def test_seed_worker_started_after_microhive_declared_the_queue(
    opened: Opened, seed: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="microhive.amqp")
    broker = await opened.broker()
    await broker.declare()
    async with worker():  # PRECONDITION_FAILED here while microhive declared a DLX
        await _microhive_to_worker(opened, broker)
    assert caplog.records == []


async def test_seed_worker_beside_a_microhive_agent_on_one_queue(opened: Opened, seed: str) -> None:
    """Competing consumers of one queue: together they take every message once."""
    broker = await opened.broker()
    agent = Feed(broker=broker, settings={"got": []})
    async with agent, worker():
        for n in range(20):
            await asyncio.to_thread(publish_to_events_feed, {"n": n}, f"p-{n}")
            await broker.events_feed.send({"n": 100 + n})
        await eventually(lambda: len(agent.settings["got"]) + len(EVENTS) == 40)
    from_agent = [payload["n"] for payload, *_ in agent.settings["got"]]
    from_worker = [e["payload"]["n"] if "payload" in e else e["n"] for e in EVENTS]
    assert sorted(from_agent + from_worker) == sorted([*range(20), *range(100, 120)])


# -- seed 003: the tutorial's send.py / receive.py on a text queue --------------------------

RUN = uuid4().hex[:8]
HELLO = Queue("hello", payload="text", address=f"hello-{RUN}")
GREETINGS = Queue("greetings", payload="text", address=f"greetings-{RUN}")
TEXT = Namespace([HELLO, GREETINGS], kind="queue")

SEND_PY = """
import pika

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello', durable=True)

for i in range(5):
    channel.basic_publish(exchange='',
                          routing_key='hello',
                          body=('Hello World {}'.format(i)).encode(),
                          properties=pika.BasicProperties(delivery_mode=2))

print("Sent 'Hello World!'")
connection.close()
"""

RECEIVE_PY = """
import pika

connection = pika.BlockingConnection(
    pika.ConnectionParameters(host='localhost'))
channel = connection.channel()

channel.queue_declare(queue='hello', durable=True)

def callback(ch, method, properties, body):
    print('Start processing {}'.format(body.decode()))
    t = time.time()
    time.sleep(random.randint(1, 5))
    print('Processed for {:.2f} sec.'.format(time.time() - t))
    channel.basic_ack(delivery_tag = method.delivery_tag)

channel.basic_consume(callback, queue='hello', no_ack=False)

print('Waiting for messages. To exit press CTRL+C')
channel.start_consuming()
"""


def tutorial(code: str, url: str, queue: str) -> str:
    """The tutorial's script for this server: host, credentials and queue name replaced (and,
    for receive.py, ``basic_consume`` in pika 1's argument names, plus the ``time`` and
    ``random`` imports the article leaves out)."""
    parts = urlparse(url)
    connect = (
        f"pika.ConnectionParameters(host={parts.hostname!r}, port={parts.port}, "
        f"virtual_host={parts.path[1:]!r}, credentials=pika.PlainCredentials("
        f"{parts.username!r}, {parts.password!r}))"
    )
    code = code.replace("pika.ConnectionParameters(host='localhost')", connect)
    code = code.replace("'hello'", repr(queue))
    code = code.replace(
        f"channel.basic_consume(callback, queue={queue!r}, no_ack=False)",
        f"channel.basic_consume(queue={queue!r}, on_message_callback=callback, auto_ack=False)",
    )
    return code.replace("import pika\n", "import pika\nimport random\nimport time\n", 1)


class Greeter(MicroAgent):
    @consumer(HELLO)
    async def hello(self, text: str) -> None:
        message = current_message()
        assert message is not None
        self.settings["got"].append((text, dict(message.headers)))


async def test_tutorial_send_py_to_a_text_queue(opened: Opened) -> None:
    broker = await opened.broker(queues=TEXT)
    agent = Greeter(broker=broker, settings={"got": []})
    async with agent:
        script = tutorial(SEND_PY, plain_url(opened.url), HELLO.address or "")
        await asyncio.to_thread(exec, compile(script, "send.py", "exec"), {})
        await eventually(lambda: len(agent.settings["got"]) == 5)
    assert [text for text, _ in agent.settings["got"]] == [f"Hello World {i}" for i in range(5)]
    assert agent.settings["got"][0][1] == {"x-routing-key": HELLO.address}
    assert await broker.hello.length() == 0


async def test_microhive_to_the_tutorial_receive_py(opened: Opened) -> None:
    """A send to a text queue writes the text itself: receive.py prints it."""
    import sys

    broker = await opened.broker(queues=TEXT)
    await broker.declare()
    script = tutorial(RECEIVE_PY, plain_url(opened.url), GREETINGS.address or "")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-u", "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        await broker.greetings.send("Hallo from microhive", sender="greeter")
        assert process.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(30):
            while "Processed" not in "".join(lines):
                lines.append((await process.stdout.readline()).decode())
        # receive.py acks after it printed "Processed": wait for the ack before the kill
        await eventually(lambda: _emptied(broker), 30)
    finally:
        process.kill()  # our own child, by its handle
        await process.wait()
    assert "Start processing Hallo from microhive\n" in lines
    assert await broker.greetings.length() == 0


async def _emptied(broker: Any) -> bool:
    return bool(await broker.greetings.length() == 0)


async def test_text_queue_round_trip_keeps_the_envelope(opened: Opened) -> None:
    """microhive's own consumer of a text queue rebuilds the very envelope it sent."""
    broker = await opened.broker(queues=TEXT)
    got: list[Any] = []

    class Reader(MicroAgent):
        @consumer(GREETINGS)
        async def greet(self, text: str) -> None:
            got.append((text, current_message()))

    async with Reader(broker=broker):
        message_id = await broker.greetings.send(
            "Grüße", headers={"trace": "t-1"}, sender="greeter"
        )
        await eventually(lambda: got)
    [(text, envelope)] = got
    assert (text, envelope.id, envelope.sender) == ("Grüße", message_id, "greeter")
    assert envelope.headers == {"trace": "t-1"} and envelope.attempt == 1
    assert envelope.name == "greetings"

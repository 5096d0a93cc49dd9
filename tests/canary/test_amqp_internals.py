"""Canary: the parts of aiormq below its public API that microhive's AMQP transport uses.

microhive.transports.amqp.pipeline numbers publishes and registers their confirm futures in
aiormq's channel bookkeeping, writes pre-encoded frames to the connection's write queue, and
replaces a channel's deliver-frame handler (docs/transports/amqp.md, "aiormq internals").
None of that is aiormq's public API, which is why pyproject.toml pins aiormq to the verified
minor range. These tests need no RabbitMQ: they drive a real aiormq Channel on a stand-in
connection. When one fails after an upgrade, read the failure's message, then aiormq's
channel.py (Channel.__init__, _reader, _on_deliver_frame, _on_return_frame,
_on_confirm_frame, _confirm_delivery) and abc.py (ChannelFrame), and adapt pipeline.py, or
keep the old bound.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

import aiormq
import pytest
from aiormq.abc import ChannelFrame, DeliveredMessage
from aiormq.base import Base
from aiormq.channel import Channel
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from microhive.transports.amqp import wire
from microhive.transports.amqp.pipeline import BORROWED, Pipeline, take_directly

UPGRADE = (
    "aiormq {version} changed a private part microhive relies on ({what}); see the docstring "
    "of tests/canary/test_amqp_internals.py and docs/transports/amqp.md#aiormq-internals"
)


def why(what: str) -> str:
    return UPGRADE.format(version=version("aiormq"), what=what)


class StandIn(Base):
    """The parts of a Connection a Channel reads: no socket, frames go to write_queue."""

    def __init__(self) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.publisher_confirms = True
        self.connection_tune = spec.Connection.Tune(frame_max=131072, heartbeat=0)
        self.write_queue: asyncio.Queue[Any] = asyncio.Queue()
        self.is_opened = False  # so that closing the channel sends nothing

    async def _on_close(self, exc: BaseException | None = None) -> None:
        return None

    def __str__(self) -> str:
        return "stand-in"


@pytest.fixture
async def channel() -> AsyncIterator[Any]:
    made = Channel(StandIn(), 1, publisher_confirms=True)  # type: ignore[arg-type]
    try:
        yield made
    finally:
        await made.close()


async def test_channel_has_the_confirm_bookkeeping(channel: Any) -> None:
    for name, kind in (
        ("delivery_tag", int),
        ("confirmations", dict),
        ("message_id_delivery_tag", dict),
        ("write_queue", asyncio.Queue),
    ):
        assert isinstance(getattr(channel, name, None), kind), why(f"Channel.{name}")
    assert channel.delivery_tag == 0, why("Channel.delivery_tag starts at 0")
    assert callable(channel.create_future), why("Channel.create_future")


def test_channel_has_the_deliver_frame_reader() -> None:
    for name, parameters in (
        ("_on_deliver_frame", ["self", "frame"]),
        ("_read_content", ["self", "frame", "header"]),
        ("_Channel__get_content_header", ["self"]),
    ):
        method = getattr(Channel, name, None)
        assert method is not None and inspect.iscoroutinefunction(method), why(name)
        assert list(inspect.signature(method).parameters) == parameters, why(
            f"the signature of Channel.{name}"
        )
    reader = inspect.getsource(Channel._reader)
    assert "self._on_deliver_frame(frame)" in reader, why(
        "Channel._reader no longer looks _on_deliver_frame up on the instance"
    )


def test_connect_context_is_where_the_frame_receiver_is_built() -> None:
    """reader.CONNECTING tells the reader its connection: aiormq must build the receiver in
    connect() itself (the caller's context), not in a task of its own."""
    source = inspect.getsource(aiormq.Connection.connect)
    assert "FrameReceiver(reader)" in source, why("Connection.connect building FrameReceiver")
    assert "create_task(" not in source.split("FrameReceiver(reader)")[0], why(
        "Connection.connect starting a task before it builds its FrameReceiver"
    )


def test_channels_by_number_route_a_channels_frames() -> None:
    """reader.deliver_directly hands a number's deliveries on only while that number is the
    consumer's channel in ``Connection.channels``, as aiormq's reader routes them."""
    source = inspect.getsource(aiormq.Connection._Connection__reader)  # type: ignore[attr-defined]
    assert "self.channels.get(channel)" in source, why("Connection.channels: number -> channel")


def test_channel_frame_takes_a_payload() -> None:
    frame = ChannelFrame(payload=b"x", should_close=False)
    assert (frame.payload, frame.should_close) == (b"x", False), why("ChannelFrame fields")


def test_every_borrowed_part_is_checked_here() -> None:
    source = inspect.getsource(inspect.getmodule(test_every_borrowed_part_is_checked_here))  # type: ignore[arg-type]
    from microhive.transports.amqp import reader

    for part in (*BORROWED, *reader.BORROWED):
        name = part.split(".")[-1].split("(")[0].split(" ")[0].split("/")[0]
        assert name in source, f"BORROWED lists {part!r}, which no canary checks"


def _frames(data: bytes) -> list[Any]:
    found = []
    while data:
        consumed, _, value = pamqp_frame.unmarshal(data)
        found.append(value)
        data = data[consumed:]
    return found


async def settled(future: asyncio.Future[Any], what: str) -> Any:
    """The future's result; a failure naming ``what`` when aiormq never settles it."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), 5)
    except TimeoutError:
        pytest.fail(why(what))


async def _published(channel: Any) -> list[Any]:
    frame = await asyncio.wait_for(channel.write_queue.get(), 5)
    assert isinstance(frame, ChannelFrame), why("write_queue items are ChannelFrame")
    return _frames(frame.payload)


async def test_a_confirm_resolves_the_future_we_registered(channel: Any) -> None:
    pipeline = Pipeline(channel, window=10)
    header = wire.properties(message_id="m1", delivery_mode=wire.PERSISTENT)
    confirm = pipeline.publish("", "jobs", header, b"body", mandatory=True, message_id="m1")
    assert confirm is not None
    assert channel.confirmations[1] is confirm, why("Channel.confirmations: tag -> future")
    assert channel.message_id_delivery_tag == {"m1": 1}, why("message_id_delivery_tag")
    publish, _, body = await _published(channel)
    assert isinstance(publish, spec.Basic.Publish) and body.value == b"body"
    await channel.frames.put((0, spec.Basic.Ack(delivery_tag=1)))
    ack = await settled(confirm, "Channel._on_confirm_frame resolving confirmations[tag]")
    assert isinstance(ack, spec.Basic.Ack), why("the confirm's result is the Basic.Ack")
    assert pipeline.in_flight == 0 and channel.message_id_delivery_tag == {}
    await pipeline.close()


async def test_a_return_fails_the_future_we_registered(channel: Any) -> None:
    pipeline = Pipeline(channel, window=10)
    header = wire.properties(message_id="m2")
    confirm = pipeline.publish("", "nowhere", header, b"x", mandatory=True, message_id="m2")
    assert confirm is not None
    await _published(channel)
    returned = spec.Basic.Return(reply_code=312, reply_text="NO_ROUTE", routing_key="nowhere")
    properties = spec.Basic.Properties(message_id="m2")
    for frame in (returned, ContentHeader(body_size=1, properties=properties), ContentBody(b"x")):
        await channel.frames.put((0, frame))
    await channel.frames.put((0, spec.Basic.Ack(delivery_tag=1)))
    with pytest.raises(aiormq.exceptions.PublishError):
        await settled(confirm, "Channel._on_return_frame failing confirmations[tag]")
    await pipeline.close()


async def test_a_nack_fails_the_future_we_registered(channel: Any) -> None:
    pipeline = Pipeline(channel, window=10)
    confirm = pipeline.publish("", "full", wire.properties(), b"x", mandatory=True)
    assert confirm is not None
    await _published(channel)
    await channel.frames.put((0, spec.Basic.Nack(delivery_tag=1)))
    with pytest.raises(aiormq.exceptions.DeliveryError):
        await settled(confirm, "Channel._confirm_delivery failing confirmations[tag]")
    await pipeline.close()


async def test_deliveries_reach_our_reader_without_a_task(channel: Any) -> None:
    taken: list[DeliveredMessage] = []
    assert take_directly(channel, taken.append), why("the deliver-frame reader's methods")
    deliver = spec.Basic.Deliver(consumer_tag="c", delivery_tag=7, routing_key="jobs")
    for frame in (deliver, ContentHeader(body_size=3), ContentBody(b"abc")):
        await channel.frames.put((0, frame))
    for _ in range(500):
        if taken:
            break
        await asyncio.sleep(0.01)
    assert len(taken) == 1, why("Channel._reader calling our _on_deliver_frame")
    [message] = taken
    assert (message.body, message.delivery.delivery_tag, message.channel) == (
        b"abc",
        7,
        channel,
    ), why("Channel._read_content's DeliveredMessage")


def test_pamqp_decoders_that_lenient_replaces_are_where_it_expects_them() -> None:
    """microhive/transports/amqp/lenient.py swaps three of pamqp's decoders for tolerant ones
    (a timestamp past year 9999, short strings that are not UTF-8). If this fails after a
    pamqp upgrade, read pamqp/decode.py: the names or tables moved, and without the swap one
    foreign message can drop every AMQP connection again."""
    import pamqp
    from pamqp import decode

    from microhive.transports.amqp import lenient

    for name in ("timestamp", "short_str", "field_table", "embedded_value"):
        assert callable(getattr(decode, name, None)), f"pamqp {pamqp.__version__}: decode.{name}"
    assert decode.METHODS["timestamp"] is lenient._timestamp_in_range, "METHODS['timestamp']"
    assert decode.METHODS["shortstr"] is lenient._short_text, "METHODS['shortstr']"
    assert decode.METHODS["table"] is lenient._table, "METHODS['table']"
    assert decode.TABLE_MAPPING[b"T"] is lenient._timestamp_in_range, "TABLE_MAPPING[b'T']"
    assert decode.TABLE_MAPPING[b"F"] is lenient._table, "TABLE_MAPPING[b'F']"
    # and they still read what pamqp reads
    assert decode.short_str(b"\x02hi") == (3, "hi")
    assert decode.short_str(b"\x02\xff\xfe") == (3, "\ufffd\ufffd")


async def test_connections_build_the_frame_receiver_by_name() -> None:
    """microhive/transports/amqp/reader.py replaces aiormq.connection.FrameReceiver with a
    buffered subclass: aiormq must still build its receiver from that module-level name in
    Connection.connect, from the stream reader alone, and iterate it in the reader task."""
    import aiormq.connection

    from microhive.transports.amqp import reader

    source = inspect.getsource(aiormq.connection.Connection.connect)
    assert "FrameReceiver(reader)" in source, why("Connection.connect builds FrameReceiver(reader)")
    receiver_type = getattr(aiormq.connection, "FrameReceiver", None)
    assert receiver_type is not None, why("aiormq.connection.FrameReceiver")
    original = reader.BufferedFrames.__mro__[1]
    made = original(asyncio.StreamReader())
    for part in ("reader", "lock", "started"):
        assert hasattr(made, part), why(f"FrameReceiver(reader).{part}")
    assert inspect.iscoroutinefunction(original.get_frame), why("FrameReceiver.get_frame")
    reader.install()
    assert aiormq.connection.FrameReceiver is reader.BufferedFrames


def test_the_pamqp_frames_the_reader_fills_have_the_slots_it_sets() -> None:
    from pamqp.header import ContentHeader

    from microhive.transports.amqp import reader

    assert reader.BORROWED, "reader.BORROWED"
    assert spec.Basic.Deliver.__slots__ == [
        "consumer_tag",
        "delivery_tag",
        "redelivered",
        "exchange",
        "routing_key",
    ], why("pamqp Basic.Deliver __slots__")
    assert spec.Basic.Ack.__slots__ == ["delivery_tag", "multiple"], why("Basic.Ack __slots__")
    assert list(spec.Basic.Properties.flags) == list(spec.Basic.Properties.__slots__)
    assert ContentHeader(0, 1).properties.cluster_id == "", why("Basic.Properties defaults")

"""The buffered frame reader (microhive/transports/amqp/reader.py) gives what aiormq's own
reader and pamqp give: the same frame objects for any frame, the same errors, whatever way
the bytes arrive. No RabbitMQ needed: frames are made with pamqp and fed to a real
``asyncio.StreamReader``; the reader is also what every AMQP test of this suite runs on."""

from __future__ import annotations

import asyncio
import itertools
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from aiormq.connection import FrameReceiver
from aiormq.exceptions import AMQPConnectionError, InvalidFrameError, ProtocolSyntaxError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.exceptions import PAMQPException
from pamqp.header import ContentHeader
from pamqp.heartbeat import Heartbeat

from microhive.transports.amqp import reader as reader_module
from microhive.transports.amqp import wire
from microhive.transports.amqp.reader import BufferedFrames, decode_frame

short = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
header_values = st.one_of(
    st.text(max_size=20), st.integers(-(2**31), 2**31 - 1), st.booleans(), st.none()
)
stamps = st.integers(0, 2**32 - 1).map(lambda s: datetime.fromtimestamp(s, UTC))


@st.composite
def properties(draw: st.DrawFn) -> spec.Basic.Properties:
    def maybe(strategy: st.SearchStrategy[Any]) -> Any:
        return draw(st.one_of(st.none(), strategy))

    return spec.Basic.Properties(
        content_type=maybe(short),
        content_encoding=maybe(short),
        headers=maybe(st.dictionaries(short.filter(bool), header_values, max_size=4)),
        delivery_mode=maybe(st.sampled_from([1, 2])),
        priority=maybe(st.integers(0, 9)),
        correlation_id=maybe(short),
        reply_to=maybe(short),
        expiration=maybe(st.integers(0, 10**6).map(str)),
        message_id=maybe(short),
        timestamp=maybe(stamps),
        message_type=maybe(short),
        user_id=maybe(short),
        app_id=maybe(short),
        cluster_id="",  # pamqp refuses any other (AMQP 0-9-1 deprecates it)
    )


tags = st.integers(0, 2**63 - 1)  # what pamqp encodes
names = st.from_regex(r"[a-zA-Z0-9_.:-]{0,40}", fullmatch=True)
frames = st.one_of(
    st.builds(
        lambda props, size: ContentHeader(0, size, props), properties(), st.integers(0, 2**40)
    ),
    st.builds(ContentBody, st.binary(min_size=1, max_size=300)),  # never empty: see below
    st.builds(spec.Basic.Deliver, short, tags, st.booleans(), names, short),
    st.builds(spec.Basic.Ack, tags, st.booleans()),
    st.builds(spec.Basic.Nack, tags, st.booleans(), st.booleans()),
    st.builds(spec.Basic.Return, st.integers(0, 999), short, names, short),
    st.builds(spec.Basic.ConsumeOk, short),
    st.just(Heartbeat()),
)


def marshal(frame: Any, channel: int) -> bytes:
    return pamqp_frame.marshal(frame, channel)


def state(value: Any) -> Any:
    """What a frame object holds, comparable across the two decoders."""
    if isinstance(value, ContentHeader):
        return ("header", value.class_id, value.weight, value.body_size, state(value.properties))
    if isinstance(value, ContentBody):
        return ("body", value.value)
    if isinstance(value, Heartbeat):
        return ("heartbeat",)
    slots = getattr(type(value), "__slots__", [])
    return (type(value).__name__, {name: getattr(value, name) for name in slots})


def outcome(decode: Any) -> Any:
    try:
        consumed, channel, value = decode()
    except (PAMQPException, ValueError, struct.error, IndexError) as exc:
        return ("error", type(exc).__name__)
    return consumed, channel, state(value)


def both(data: bytes) -> tuple[Any, Any]:
    size = struct.unpack_from(">I", data, 3)[0]
    ours = outcome(lambda: decode_frame(data, 0, size))
    theirs = outcome(lambda: pamqp_frame.unmarshal(data))
    return ours, theirs


@given(frames, st.integers(0, 65535))
def test_a_frame_decodes_as_pamqp_decodes_it(frame: Any, channel: int) -> None:
    ours, theirs = both(marshal(frame, channel))
    assert ours == theirs
    assert ours[0] != "error"


@given(st.data(), frames)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_a_damaged_frame_decodes_or_fails_as_pamqp_does(data: st.DataObject, frame: Any) -> None:
    """Bytes changed inside the payload (its length kept): truncated strings, impossible
    flags, a table cut short — the same object or the same kind of error."""
    raw = bytearray(marshal(frame, 1))
    if len(raw) <= 8:
        return
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(7, len(raw) - 2))
        raw[where] = data.draw(st.integers(0, 255))
    ours, theirs = both(bytes(raw))
    if theirs[0] == "error":
        assert ours[0] == "error"
    else:
        assert ours == theirs


def test_microhive_own_message_properties_take_the_hand_decoder() -> None:
    from microhive.envelope import Envelope, Kind

    envelope = Envelope(Kind.MESSAGE, "jobs", {"n": 1}, "me", headers={"t": "x"}, attempt=2)
    header = wire.message_properties(envelope, "application/json")
    data = wire.content_frames(3, header, b"{}", 131072)
    size = struct.unpack_from(">I", data, 3)[0]
    ours, theirs = both(data[: size + 8])
    assert ours == theirs
    assert ours[2][4][1]["message_id"] == envelope.id


def test_an_empty_frame_fails_as_in_pamqp() -> None:
    """pamqp decodes no frame of size 0 but a heartbeat (a body frame is never empty)."""
    ours, theirs = both(marshal(ContentBody(b""), 1))
    assert ours == theirs == ("error", "UnmarshalingException")
    ours, theirs = both(marshal(Heartbeat(), 0))
    assert ours == theirs and ours[0] == 8


def test_a_bad_frame_end_is_an_invalid_frame() -> None:
    data = bytearray(marshal(spec.Basic.Ack(5), 1))
    data[-1] = 0
    ours, theirs = both(bytes(data))
    assert ours[0] == theirs[0] == "error"


# -- the reader on a real StreamReader -------------------------------------------------


async def read_all(receiver_type: type[FrameReceiver], chunks: list[bytes]) -> list[Any]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    receiver = receiver_type(reader)
    found: list[Any] = []
    try:
        async for consumed, channel, value in receiver:
            found.append((consumed, channel, state(value)))
    except AMQPConnectionError as exc:
        found.append(("lost", str(exc).split(".")[0]))
    except InvalidFrameError as exc:
        found.append(("invalid", str(exc)))
    return found


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(st.lists(st.tuples(frames, st.integers(0, 65535)), min_size=1, max_size=12), st.data())
@settings(max_examples=60)
def test_frames_read_in_any_chunking_are_what_aiormq_reads(
    sent: list[tuple[Any, int]], data: st.DataObject
) -> None:
    stream = b"".join(marshal(frame, channel) for frame, channel in sent)
    truncate = data.draw(st.booleans())
    if truncate:  # the server went away in the middle of a frame
        stream = stream[: data.draw(st.integers(1, len(stream) - 1))]
    points = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))

    async def check() -> None:
        ours = await read_all(BufferedFrames, cut(stream, points))
        theirs = await read_all(FrameReceiver, [stream])
        assert ours == theirs

    asyncio.run(check())


async def test_large_bodies_span_reads() -> None:
    body = bytes(range(256)) * 512  # 128 KiB: more than one read
    frame = marshal(ContentBody(body), 9)
    found = await read_all(BufferedFrames, [frame[:10], frame[10:70000], frame[70000:]])
    assert found == [(len(frame), 9, ("body", body))]


async def test_a_protocol_header_instead_of_a_frame_is_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"AMQP\x00\x00\x09\x01")
    with pytest.raises(ProtocolSyntaxError):
        await BufferedFrames(reader).get_frame()


async def test_a_frame_pamqp_cannot_decode_is_an_invalid_frame() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"\x01\x00\x01\x00\x00\x00\x04\xff\xff\xff\xff\xce")  # unknown method
    with pytest.raises(InvalidFrameError):
        await BufferedFrames(reader).get_frame()


def test_the_frames_of_a_delivery_and_a_confirm_skip_pamqp(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of the reader: the hot frames are decoded by hand (pamqp stays the judge
    of everything else, which the tests above compare against)."""
    from pamqp import frame as pamqp_module

    def refuse(data: bytes) -> Any:
        raise AssertionError("decoded by pamqp")

    monkeypatch.setattr(pamqp_module, "unmarshal", refuse)
    props = spec.Basic.Properties(message_id="m", headers={"a": 1}, timestamp=datetime.now(UTC))
    for frame in (
        spec.Basic.Deliver("tag", 7, True, "ex", "key"),
        spec.Basic.Ack(7, True),
        ContentHeader(0, 3, props),
        ContentBody(b"abc"),
    ):
        data = marshal(frame, 1)
        decode_frame(data, 0, len(data) - 8)


# -- deliveries handed to their consumer by the reader itself --------------------------------


class Connection:
    """What the reader asks of its connection: which channel a number belongs to."""

    def __init__(self, numbers: list[int]) -> None:
        self.channels = {number: Channel(self, number) for number in numbers}


class Channel:
    def __init__(self, connection: Connection, number: int) -> None:
        self.connection = connection
        self.number = number


deliveries = st.tuples(
    st.builds(spec.Basic.Deliver, short, tags, st.booleans(), names, short),
    properties(),
    st.lists(st.binary(min_size=1, max_size=200), max_size=3),  # the body's frames
)


def delivery_frames(deliver: Any, props: Any, parts: list[bytes]) -> list[Any]:
    size = sum(map(len, parts))
    return [deliver, ContentHeader(0, size, props), *map(ContentBody, parts)]


def receiver_of(connection: Connection, chunks: list[bytes]) -> BufferedFrames:
    """The reader ``connection`` would build (as its connect() does), on ``chunks``."""
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    token = reader_module.CONNECTING.set(connection)
    try:
        return BufferedFrames(reader)
    finally:
        reader_module.CONNECTING.reset(token)


async def read_directly(
    chunks: list[bytes], direct: int, connection: Connection
) -> tuple[list[Any], list[Any]]:
    """(frames the reader returned but for the heartbeats it adds, deliveries it handed on)."""
    receiver = receiver_of(connection, chunks)
    taken: list[Any] = []
    assert reader_module.deliver_directly(connection.channels[direct], taken.append)
    returned = [
        (channel, state(value))
        async for _, channel, value in receiver
        if channel  # channel 0: the heartbeats the reader adds after handing deliveries on
    ]
    handed = [
        (m.channel.number, state(m.delivery), state(m.header.properties), m.body) for m in taken
    ]
    return returned, handed


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.one_of(deliveries, frames)), max_size=10),
    st.data(),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
def test_a_direct_channel_gets_its_deliveries_and_every_other_frame_reads_as_before(
    sent: list[tuple[int, Any]], data: st.DataObject
) -> None:
    """Channel 1 is a consumer's: its deliveries (deliver, header, bodies) reach ``take``
    whole, in order, whatever the chunking; every frame of channel 2, and channel 1's other
    frames, come out of the reader as from aiormq's. (A stray content frame on channel 1 —
    no delivery before it — is the channel's own reader's to refuse, as before.)"""
    stream_parts: list[bytes] = []
    expected_returned: list[Any] = []
    expected_handed: list[Any] = []

    def put(frame: Any, channel: int) -> Any:
        """Onto the stream; what it decodes to (as aiormq would see it)."""
        stream_parts.append(data := marshal(frame, channel))
        return decode_frame(data, 0, len(data) - 8)[2]

    for channel, item in sent:
        if isinstance(item, tuple):
            parts = [put(frame, channel) for frame in delivery_frames(*item)]
            if channel == 1:
                body = b"".join(p.value for p in parts[2:])
                expected_handed.append((1, state(parts[0]), state(parts[1].properties), body))
            else:
                expected_returned += [(channel, state(frame)) for frame in parts]
        elif channel == 1 and isinstance(item, spec.Basic.Deliver):
            # a lone deliver begins a delivery: give it an empty body
            deliver = put(item, 1)
            header = put(ContentHeader(0, 0, spec.Basic.Properties()), 1)
            expected_handed.append((1, state(deliver), state(header.properties), b""))
        elif not isinstance(item, Heartbeat):  # (pamqp puts a heartbeat on channel 0)
            stray = channel == 1 and isinstance(item, ContentHeader | ContentBody)
            on = 2 if stray else channel  # a stray content frame is not what this is about
            expected_returned.append((on, state(put(item, on))))
    stream = b"".join(stream_parts)
    points = data.draw(st.lists(st.integers(0, max(len(stream), 1)), max_size=8))
    connection = Connection([1, 2])

    async def check() -> None:
        returned, handed = await read_directly(cut(stream, points), 1, connection)
        assert handed == expected_handed
        assert returned == expected_returned

    asyncio.run(check())


async def test_a_channel_number_given_to_another_channel_is_read_as_before() -> None:
    """aiormq gives a closed channel's number to the next one: its deliveries are the new
    channel's, through aiormq's reader, not the old consumer's."""
    deliver = spec.Basic.Deliver("c", 1, False, "", "jobs")
    frames = delivery_frames(deliver, spec.Basic.Properties(), [b"x"])
    connection = Connection([1])

    stream = b"".join(marshal(frame, 1) for frame in frames)
    returned, handed = await read_directly([stream], 1, connection)
    assert [h[3] for h in handed] == [b"x"] and returned == []

    receiver = receiver_of(connection, [stream])
    taken: list[Any] = []
    reader_module.deliver_directly(connection.channels[1], taken.append)
    connection.channels[1] = Channel(connection, 1)  # closed, and its number reused
    returned = [state(value) async for _, _, value in receiver]
    as_read = [decode_frame(data := marshal(f, 1), 0, len(data) - 8)[2] for f in frames]
    assert taken == [] and returned == [state(frame) for frame in as_read]


async def test_a_consumer_that_raises_does_not_stop_the_reader() -> None:
    deliver = spec.Basic.Deliver("c", 1, False, "", "jobs")
    stream = b"".join(
        marshal(frame, 1) for frame in delivery_frames(deliver, spec.Basic.Properties(), [b"x"])
    )
    stream += marshal(Heartbeat(), 0)
    connection = Connection([1])
    receiver = receiver_of(connection, [stream])

    def take(message: Any) -> None:
        raise RuntimeError("consumer bug")

    reader_module.deliver_directly(connection.channels[1], take)
    frames = [(channel, type(value)) async for _, channel, value in receiver]
    assert frames[-1] == (0, Heartbeat)  # read on after it


async def test_a_reader_does_not_keep_its_connection_alive() -> None:
    """The registry of readers is keyed weakly by connection: a reader must not hold its
    connection, or every reconnect would leave the old one behind."""
    import gc
    import weakref

    connection = Connection([1])
    receiver = receiver_of(connection, [])
    assert reader_module._RECEIVERS[connection] is receiver
    gone = weakref.ref(connection)
    del connection
    gc.collect()
    assert gone() is None and receiver not in reader_module._RECEIVERS.values()

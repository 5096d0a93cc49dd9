"""The frames microhive encodes by hand decode, with pamqp, to what they should."""

from __future__ import annotations

from datetime import UTC, datetime

from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.body import ContentBody
from pamqp.header import ContentHeader

from microhive import JsonCodec, MicroAgent, consumer
from microhive.envelope import Envelope, Kind
from microhive.transports.amqp import wire

from .conftest import QUEUES, Opened, eventually


def frames(data: bytes) -> list[tuple[int, object]]:
    found = []
    while data:
        consumed, channel, value = pamqp_frame.unmarshal(data)
        found.append((channel, value))
        data = data[consumed:]
    return found


def test_message_properties_decode_as_sent() -> None:
    envelope = Envelope(
        Kind.MESSAGE, "jobs", {"n": 1}, "registrar", headers={"trace": "t"}, attempt=3
    )
    header = wire.message_properties(envelope, "application/json")
    [(channel, content)] = frames(wire.content_frames(7, header, b"", 131072))
    assert channel == 7 and isinstance(content, ContentHeader)
    props = content.properties
    assert props.content_type == "application/json"
    assert props.delivery_mode == 2
    assert props.message_id == envelope.id
    assert props.app_id == "registrar"
    assert props.message_type == "message"
    assert props.timestamp == datetime.fromtimestamp(int(envelope.sent_at), UTC)
    assert props.headers == {"trace": "t", "x-attempt": 3}
    assert props.correlation_id is None and props.reply_to is None


def test_first_attempt_without_headers_has_no_table() -> None:
    envelope = Envelope(Kind.MESSAGE, "jobs", 1, "", correlation_id="c", reply_to="r")
    header = wire.message_properties(envelope, "application/json")
    [(_, content)] = frames(wire.content_frames(1, header, b"", 131072))
    assert isinstance(content, ContentHeader)
    assert content.properties.headers is None and content.properties.app_id is None
    assert (content.properties.correlation_id, content.properties.reply_to) == ("c", "r")


def test_large_bodies_are_split_into_frames() -> None:
    body = bytes(range(256)) * 40  # 10,240 bytes
    data = wire.content_frames(3, wire.properties(delivery_mode=2), body, frame_max=4096)
    decoded = frames(data)
    header = decoded[0][1]
    assert isinstance(header, ContentHeader) and header.body_size == len(body)
    chunks = [value for _, value in decoded[1:]]
    assert all(isinstance(c, ContentBody) for c in chunks)
    assert [len(c.value) for c in chunks] == [4088, 4088, 2064]  # type: ignore[attr-defined]
    assert b"".join(c.value for c in chunks) == body  # type: ignore[attr-defined]


def test_publish_ack_and_nack_frames() -> None:
    [(_, publish)] = frames(wire.publish_method(2, "ex", "a.b", True))
    assert isinstance(publish, spec.Basic.Publish)
    assert (publish.exchange, publish.routing_key, publish.mandatory) == ("ex", "a.b", True)
    [(_, ack)] = frames(wire.ack_frame(2, 12345678901, multiple=True))
    assert isinstance(ack, spec.Basic.Ack) and ack.delivery_tag == 12345678901 and ack.multiple
    [(_, nack)] = frames(wire.nack_frame(2, 9, requeue=True))
    assert isinstance(nack, spec.Basic.Nack) and nack.requeue and not nack.multiple


def test_foreign_messages_become_payloads() -> None:
    props = spec.Basic.Properties(
        message_id="m1", app_id="registrar", headers={"trace": "t", "n": 1}, timestamp=None
    )
    envelope, error = wire.incoming(JsonCodec(), b'{"kind": "hire"}', props, "feed")
    assert error is None and envelope is not None
    assert (envelope.id, envelope.sender, envelope.name) == ("m1", "registrar", "feed")
    assert envelope.payload == {"kind": "hire"} and envelope.headers == {"trace": "t"}
    envelope, error = wire.incoming(JsonCodec(), b"[1, 2]", props, "feed")
    assert envelope is not None and envelope.payload == [1, 2]
    envelope, error = wire.incoming(JsonCodec(), b'{"kind": "message"}', props, "feed")
    assert envelope is not None and envelope.payload == {"kind": "message"}, "no guessing"
    envelope, error = wire.incoming(JsonCodec(), b'{"v": 1, "kind": "message"}', props, "feed")
    assert envelope is None and error is not None and "name" in error
    envelope, error = wire.incoming(JsonCodec(), b"\xff", props, "feed")
    assert envelope is None and error is not None


async def test_a_message_larger_than_a_frame_round_trips(opened: Opened) -> None:
    got = []

    class Big(MicroAgent):
        @consumer(QUEUES.jobs)
        async def job(self, blob: str) -> None:
            got.append(blob)

    broker = await opened.broker()
    blob = "x" * 1_000_000
    async with Big(broker=broker):
        await broker.jobs.send({"blob": blob})
        await eventually(lambda: got)
    assert got == [blob]

"""The AMQP side of the adoption rule, at the wire: what a plain client's properties become,
and microhive's text/bytes messages (the ``x-microhive`` marker) rebuilt as sent."""

from __future__ import annotations

from datetime import UTC, datetime

from pamqp import commands as spec
from pamqp import frame as pamqp_frame
from pamqp.header import ContentHeader

from microhive import Queue
from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind
from microhive.transports.amqp import wire

TEXT = Queue("wire_text", payload="text")
RAW = Queue("wire_raw", payload="bytes")


def decoded(header: bytes) -> spec.Basic.Properties:
    """The properties as a receiving client decodes them."""
    data = wire.content_frames(1, header, b"", 131072)
    _, _, content = pamqp_frame.unmarshal(data)
    assert isinstance(content, ContentHeader)
    return content.properties


def test_a_plain_message_is_adopted_with_its_properties() -> None:
    props = spec.Basic.Properties(
        message_id="m1",
        app_id="registrar",
        correlation_id="c1",
        timestamp=datetime(2026, 1, 2, tzinfo=UTC),
        headers={"trace": "t", "n": 1, "raw": b"b"},
        message_type="message",  # a plain client's own type: not a marker
    )
    envelope, error = wire.incoming(JsonCodec(), b'{"kind": "message"}', props, "feed", "feed")
    assert error is None and envelope is not None
    assert envelope.payload == {"kind": "message"}
    assert (envelope.id, envelope.sender, envelope.correlation_id) == ("m1", "registrar", "c1")
    assert envelope.sent_at == datetime(2026, 1, 2, tzinfo=UTC).timestamp()
    assert envelope.headers == {"trace": "t", "raw": "b", "x-routing-key": "feed"}


def test_text_queues_adopt_text_and_refuse_what_is_not_utf8() -> None:
    props = spec.Basic.Properties()
    envelope, error = wire.incoming(JsonCodec(), b"Hello World!", props, TEXT)
    assert error is None and envelope is not None and envelope.payload == "Hello World!"
    envelope, error = wire.incoming(JsonCodec(), b"\xff\xfe", props, TEXT)
    assert envelope is None and error is not None and "UTF-8" in error
    envelope, error = wire.incoming(JsonCodec(), b"\xff\xfe", props, RAW)
    assert envelope is not None and envelope.payload == b"\xff\xfe"


def test_a_text_send_is_the_text_and_comes_back_as_the_same_envelope() -> None:
    sent = Envelope(
        Kind.MESSAGE, "wire_text", "Grüße", "greeter", headers={"trace": "t"}, attempt=3
    )
    body = wire.payload_body(sent, "text")
    assert body == "Grüße".encode()
    props = decoded(wire.payload_properties(sent, "text"))
    assert props.content_type == "text/plain; charset=utf-8"
    assert props.headers is not None and props.headers[wire.MARKER] == "text"
    envelope, error = wire.incoming(JsonCodec(), body, props, TEXT, "wire_text")
    assert error is None and envelope is not None
    assert envelope == sent


def test_a_bytes_send_on_a_queue_declared_otherwise_still_comes_back() -> None:
    """The marker says what the body is, whatever the receiver's declaration says."""
    sent = Envelope(Kind.MESSAGE, "wire_raw", b"\x00\x01", "")
    props = decoded(wire.payload_properties(sent, "bytes"))
    envelope, error = wire.incoming(JsonCodec(), b"\x00\x01", props, "wire_raw")
    assert error is None and envelope is not None and envelope.payload == b"\x00\x01"


def test_a_bad_marker_is_undecodable() -> None:
    props = spec.Basic.Properties(headers={wire.MARKER: "yaml"})
    envelope, error = wire.incoming(JsonCodec(), b"x", props, TEXT)
    assert envelope is None and error is not None and wire.MARKER in error

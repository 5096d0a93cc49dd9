"""JsonCodec: envelopes to bytes and back, and nothing but DecodeError for bad input."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from microhive import DecodeError, Envelope, JsonCodec, Kind, PayloadError, PayloadTooLarge
from microhive.codecs import WIRE_VERSION, guarded

WIRE_KEYS = {
    "v",
    "id",
    "kind",
    "name",
    "sender",
    "payload",
    "headers",
    "correlation_id",
    "reply_to",
    "sent_at",
    "attempt",
}

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(texts, children, max_size=5),
    max_leaves=25,
)
envelopes = st.builds(
    Envelope,
    kind=st.sampled_from(Kind),
    name=texts.filter(bool),
    payload=json_values,
    sender=texts,
    id=texts,
    headers=st.dictionaries(texts, texts, max_size=5),
    correlation_id=st.none() | texts,
    reply_to=st.none() | texts,
    sent_at=st.floats(allow_nan=False, allow_infinity=False),
    attempt=st.integers(min_value=1, max_value=2**63 - 1),
)


def same(left: Any, right: Any) -> bool:
    """Equal and of the same JSON type all the way down (1 and 1.0 and True differ)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    return bool(left == right)


@settings(max_examples=300, deadline=None)
@given(envelope=envelopes)
@example(
    envelope=Envelope(
        Kind.CALL, "ünïcødé 🐝", {"": [None, False, 0, -0.0, 2**64 - 1, -(2**63)]}, id=""
    )
)
def test_envelope_round_trips(envelope: Envelope) -> None:
    codec = JsonCodec()
    decoded = codec.decode(codec.encode(envelope))
    assert decoded == envelope
    assert same(decoded.payload, envelope.payload)
    assert type(decoded.kind) is Kind
    assert type(decoded.sent_at) is float


@given(value=json_values)
def test_values_round_trip(value: Any) -> None:
    codec = JsonCodec()
    assert same(codec.decode_value(codec.encode_value(value)), value)


def test_wire_keys_and_values() -> None:
    envelope = Envelope(
        Kind.MESSAGE,
        "jobs",
        {"n": 1},
        "producer",
        id="abc",
        headers={"h": "v"},
        correlation_id="c1",
        reply_to="inbox",
        sent_at=12.5,
        attempt=3,
    )
    document = orjson.loads(JsonCodec().encode(envelope))
    assert set(document) == WIRE_KEYS
    assert document == {
        "v": WIRE_VERSION,
        "id": "abc",
        "kind": "message",
        "name": "jobs",
        "sender": "producer",
        "payload": {"n": 1},
        "headers": {"h": "v"},
        "correlation_id": "c1",
        "reply_to": "inbox",
        "sent_at": 12.5,
        "attempt": 3,
    }
    assert WIRE_VERSION == 1
    assert JsonCodec.content_type == "application/json"


@pytest.mark.parametrize("kind", list(Kind))
def test_kinds_on_the_wire(kind: Kind) -> None:
    data = JsonCodec().encode(Envelope(kind, "x", None))
    assert orjson.loads(data)["kind"] == kind.value


def test_minimal_document_gets_defaults() -> None:
    envelope = JsonCodec().decode(b'{"kind": "signal", "name": "ping"}')
    assert envelope.kind is Kind.SIGNAL
    assert envelope.name == "ping"
    assert envelope.payload is None
    assert envelope.sender == ""
    assert envelope.headers == {}
    assert envelope.correlation_id is None
    assert envelope.reply_to is None
    assert envelope.sent_at == 0.0
    assert envelope.attempt == 1
    assert len(envelope.id) == 32
    int(envelope.id, 16)


def test_integer_sent_at_becomes_float() -> None:
    envelope = JsonCodec().decode(b'{"kind": "reply", "name": "x", "sent_at": 17}')
    assert envelope.sent_at == 17.0
    assert type(envelope.sent_at) is float


# -- decode errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b'{"kind": "signal", "name": "x"', "not valid JSON"),
        (b'{"kind": "signal", "name": "\xff"}', "not valid JSON"),
        (b"\xc3\x28", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'"signal"', "must be a JSON object"),
        (b"1", "must be a JSON object"),
        (b"null", "must be a JSON object"),
        (b'{"name": "x"}', "'kind' must be one of ['call', 'message', 'reply', 'signal']"),
        (b'{"kind": "event", "name": "x"}', "'kind' must be one of"),
        (b'{"kind": "SIGNAL", "name": "x"}', "'kind' must be one of"),
        (b'{"kind": 1, "name": "x"}', "'kind' must be one of"),
        (b'{"kind": null, "name": "x"}', "'kind' must be one of"),
        (b'{"kind": "signal"}', "'name' is required"),
        (b'{"kind": "signal", "name": ""}', "'name' is required"),
        (b'{"kind": "signal", "name": 5}', "'name'"),
        (b'{"kind": "signal", "name": null}', "'name'"),
        (b'{"kind": "signal", "name": ["x"]}', "'name'"),
        (b'{"kind": "signal", "name": "x", "sender": 5}', "'sender' must be a string"),
        (b'{"kind": "signal", "name": "x", "id": 5}', "'id' must be a string"),
        (b'{"kind": "call", "name": "x", "reply_to": []}', "'reply_to' must be a string"),
        (b'{"kind": "call", "name": "x", "correlation_id": 1}', "'correlation_id' must be"),
        (b'{"kind": "signal", "name": "x", "headers": {"a": 1}}', "'headers' must map strings"),
        (b'{"kind": "signal", "name": "x", "headers": ["a"]}', "'headers' must map strings"),
        (b'{"kind": "signal", "name": "x", "headers": "a"}', "'headers' must map strings"),
        (b'{"kind": "signal", "name": "x", "attempt": 0}', "'attempt' must be a positive"),
        (b'{"kind": "signal", "name": "x", "attempt": -1}', "'attempt' must be a positive"),
        (b'{"kind": "signal", "name": "x", "attempt": "2"}', "'attempt' must be a positive"),
        (b'{"kind": "signal", "name": "x", "attempt": 1.0}', "'attempt' must be a positive"),
        (b'{"kind": "signal", "name": "x", "attempt": true}', "'attempt' must be a positive"),
        (b'{"kind": "signal", "name": "x", "sent_at": "now"}', "'sent_at' must be a number"),
        (b'{"kind": "signal", "name": "x", "sent_at": false}', "'sent_at' must be a number"),
        (b'{"kind": "signal", "name": "x", "v": 2}', "unsupported wire version 2"),
        (b'{"kind": "signal", "name": "x", "v": "1"}', "unsupported wire version '1'"),
        (b'{"kind": "signal", "name": "x", "v": null}', "unsupported wire version None"),
    ],
)
def test_decode_errors(data: bytes, words: str) -> None:
    with pytest.raises(DecodeError) as info:
        JsonCodec().decode(data)
    assert words in str(info.value)


@pytest.mark.parametrize("kind", [b"[]", b'["signal"]', b"{}"])
def test_unhashable_kind_is_a_decode_error(kind: bytes) -> None:
    with pytest.raises(DecodeError):
        JsonCodec().decode(b'{"kind": ' + kind + b', "name": "x"}')


def test_boolean_wire_version_is_refused() -> None:
    with pytest.raises(DecodeError):
        JsonCodec().decode(b'{"v": true, "kind": "signal", "name": "x"}')


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (b"headers", b"false"),
        (b"headers", b"0"),
        (b"headers", b'""'),
        (b"headers", b"[]"),
        (b"sender", b"false"),
        (b"sender", b"0"),
        (b"sender", b"[]"),
    ],
)
def test_falsy_values_of_the_wrong_type_are_a_decode_error(key: bytes, value: bytes) -> None:
    data = b'{"kind": "signal", "name": "x", "' + key + b'": ' + value + b"}"
    with pytest.raises(DecodeError):
        JsonCodec().decode(data)


def test_null_headers_mean_no_headers() -> None:
    assert JsonCodec().decode(b'{"kind": "signal", "name": "x", "headers": null}').headers == {}


# -- size limits -------------------------------------------------------------------------


def test_size_limit_at_encode_is_inclusive() -> None:
    envelope = Envelope(Kind.MESSAGE, "jobs", "x" * 1000)
    size = len(JsonCodec().encode(envelope))
    assert JsonCodec(max_size=size).encode(envelope)
    with pytest.raises(PayloadTooLarge) as info:
        JsonCodec(max_size=size - 1).encode(envelope)
    assert str(info.value) == f"'jobs': encoded message is {size} bytes, limit is {size - 1}"
    assert isinstance(info.value, PayloadError)


def test_size_limit_at_decode() -> None:
    data = JsonCodec().encode(Envelope(Kind.MESSAGE, "jobs", "x" * 1000))
    assert JsonCodec(max_size=len(data)).decode(data).payload == "x" * 1000
    with pytest.raises(DecodeError) as info:
        JsonCodec(max_size=len(data) - 1).decode(data)
    assert f"{len(data)} bytes exceeds the limit of {len(data) - 1}" in str(info.value)


def test_size_limit_for_values() -> None:
    codec = JsonCodec(max_size=10)
    assert codec.encode_value([1, 2]) == b"[1,2]"
    with pytest.raises(PayloadTooLarge, match="'value'"):
        codec.encode_value("x" * 20)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode_value(b'"' + b"x" * 20 + b'"')


def test_default_limit_is_4_mib() -> None:
    assert JsonCodec().max_size == 4 * 1024 * 1024
    with pytest.raises(PayloadTooLarge):
        JsonCodec().encode(Envelope(Kind.MESSAGE, "big", "x" * (4 * 1024 * 1024)))


# -- unencodable payloads ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({1, 2}, "Type is not JSON serializable: set"),
        (object(), "Type is not JSON serializable: object"),
        ({"nested": [b"bytes"]}, "Type is not JSON serializable: bytes"),
        ("\ud800", "surrogates not allowed"),
    ],
)
def test_unencodable_payload_is_a_payload_error(payload: Any, words: str) -> None:
    with pytest.raises(PayloadError) as info:
        JsonCodec().encode(Envelope(Kind.SIGNAL, "user_enter", payload))
    text = str(info.value)
    assert text.startswith("'user_enter': payload is not JSON-encodable")
    assert words in text
    assert not isinstance(info.value, PayloadTooLarge)


@given(st.integers() | st.lists(st.integers(), max_size=3))
def test_integers_of_any_size_arrive_as_the_same_integers(value: Any) -> None:
    """Both sides agree: no integer is refused at the sender or turned into a float."""
    codec = JsonCodec()
    envelope = codec.decode(codec.encode(Envelope(Kind.MESSAGE, "q", {"n": value, 7: [value]})))
    assert envelope.payload == {"n": value, "7": [value]}
    assert codec.decode_value(codec.encode_value(value)) == value


def test_a_foreign_big_integer_is_kept_exactly() -> None:
    document = b'{"kind":"message","name":"q","payload":{"n":123456789012345678901234567890}}'
    assert JsonCodec().decode(document).payload == {"n": 123456789012345678901234567890}


def test_big_integers_with_an_unencodable_value_still_fail_clearly() -> None:
    with pytest.raises(PayloadError, match="not JSON-encodable"):
        JsonCodec().encode(Envelope(Kind.MESSAGE, "q", {"n": 2**70, "s": {1}}))


@pytest.mark.parametrize("depth", [100, 1_100, 5_000, 100_000])
def test_deep_nesting_is_a_decode_error_or_a_payload(depth: int) -> None:
    payload = b"[" * depth + b"]" * depth
    document = b'{"kind":"message","name":"jobs","payload":' + payload + b"}"
    try:
        JsonCodec().decode(document)
    except DecodeError as exc:
        assert "nested too deeply" in str(exc) or "not valid JSON" in str(exc)
    with contextlib.suppress(DecodeError):
        JsonCodec().decode_value(payload)


class _BrokenCodec(JsonCodec):
    def decode(self, data: bytes) -> Envelope:
        raise IndexError("bug in a user's codec")


def test_a_user_codec_that_raises_anything_gives_decode_errors() -> None:
    codec = guarded(_BrokenCodec())
    with pytest.raises(DecodeError, match="codec failed: IndexError: bug in a user's codec"):
        codec.decode(b"{}")
    assert guarded(None).decode_value(b"[1]") == [1]
    assert guarded(codec) is codec


def test_unencodable_value_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="'value': payload is not JSON-encodable"):
        JsonCodec().encode_value({"s": {1}})


def test_documented_lossy_encodings() -> None:
    """docs/wire-format.md: NaN and infinities become null, non-string keys strings, etc."""
    import uuid
    from datetime import UTC, datetime
    from enum import Enum

    class Colour(Enum):
        RED = "red"

    payload = {
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        1: "int key",
        "when": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "id": uuid.UUID(int=1),
        "colour": Colour.RED,
    }
    codec = JsonCodec()
    decoded = codec.decode(codec.encode(Envelope(Kind.SIGNAL, "x", payload))).payload
    assert decoded == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "1": "int key",
        "when": "2024-01-02T03:04:05+00:00",
        "id": "00000000-0000-0000-0000-000000000001",
        "colour": "red",
    }


# -- fuzz: decode raises DecodeError or returns an Envelope, nothing else -----------------


def decodes_or_refuses(data: bytes) -> None:
    try:
        envelope = JsonCodec().decode(data)
    except DecodeError:
        return
    assert isinstance(envelope, Envelope)
    assert isinstance(envelope.kind, Kind)
    assert envelope.name and isinstance(envelope.name, str)
    assert isinstance(envelope.attempt, int) and envelope.attempt >= 1


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=200))
@example(data=b"\xff\xfe\x00")
@example(data=b'{"kind":"signal","name":"x"}')
@example(data=b"[" * 2000)
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


# kind values are hashable here: unhashable kinds are the known bug tested above
field_values = json_values | st.sampled_from(["signal", "message", "call", "reply", 1, 0])
hashable_kinds = json_scalars | st.sampled_from(list(Kind))
documents = st.fixed_dictionaries(
    {},
    optional={
        "kind": hashable_kinds,
        **{key: field_values for key in WIRE_KEYS - {"kind"}},
        "extra": field_values,
    },
)


@settings(max_examples=500, deadline=None)
@given(document=documents)
def test_fuzz_json_objects(document: dict[str, Any]) -> None:
    decodes_or_refuses(orjson.dumps(document))


@settings(max_examples=200, deadline=None)
@given(envelope=envelopes, cut=st.integers(min_value=0))
def test_fuzz_truncated_envelopes(envelope: Envelope, cut: int) -> None:
    data = JsonCodec().encode(envelope)
    decodes_or_refuses(data[: cut % max(len(data), 1)])


def _outcome(decode: Any, data: bytes) -> Any:
    try:
        envelope = decode(data)
    except DecodeError:
        return "refused"
    fields = {k: getattr(envelope, k) for k in Envelope.__slots__}
    if not isinstance(orjson.loads(data).get("id"), str):
        fields["id"] = "generated"  # a random one, different each time
    return fields


@settings(max_examples=800, deadline=None)
@given(document=documents)
@example(document={"kind": "signal", "name": "x", "sent_at": 5})
@example(document={"kind": "signal", "name": "x", "attempt": True})
@example(document={"kind": "signal", "name": "x", "v": 1.0})
@example(document={"kind": "signal", "name": "x", "payload": 2**64 - 1})
@example(document={"kind": "call", "name": "x", "id": None, "headers": None, "sender": None})
def test_fast_decode_agrees_with_the_field_by_field_check(document: dict[str, Any]) -> None:
    """decode() checks the envelope in C (msgspec) and falls back to envelope_from_dict only
    for what it refuses: both must accept and refuse the same documents, with equal results."""
    codec = JsonCodec()
    data = orjson.dumps(document)
    fast, checked = _outcome(codec.decode, data), _outcome(codec._decode_checked, data)
    if fast == "refused" or checked == "refused":
        assert fast == checked
    else:
        assert all(same(fast[k], checked[k]) for k in fast), (fast, checked)


@pytest.mark.parametrize(
    "data",
    [
        b'{"kind":"signal","name":"x","payload":[1e400]}',  # valid JSON, too big for a double
        b'{"kind":"signal","name":"x","payload":123456789012345678901234567890}',
        b'{"kind":"signal","name":"x","name":"y"}',  # a duplicate key: the last one counts
    ],
)
def test_fast_decode_agrees_on_edge_documents(data: bytes) -> None:
    codec = JsonCodec()
    assert _outcome(codec.decode, data) == _outcome(codec._decode_checked, data)


def test_message_ids_do_not_repeat_when_the_program_seeds_random() -> None:
    """Consumers de-duplicate by message id (examples/feed): a program's ``random.seed(42)``
    (or hypothesis seeding it per example) must not make a restarted producer reuse ids."""
    import random

    from microhive.envelope import new_id

    state = random.getstate()
    try:
        random.seed(42)
        first = [new_id() for _ in range(3)]
        random.seed(42)
        again = [new_id() for _ in range(3)]
    finally:
        random.setstate(state)
    assert len(set(first + again)) == 6


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    import os

    from microhive.envelope import new_id

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write one id and leave at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    mine = new_id()
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert len(theirs) == 32 and theirs != mine

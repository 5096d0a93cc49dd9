"""Bad input from outside: foreign producers put anything in a queue, the consumer goes on.

1,000 good messages are interleaved with every kind of bad one, published with the engine's
own client (tests/contract/plain_clients.py). Afterwards every good message was handled
(exactly once on memory, at least once elsewhere), every bad one was dead-lettered once with
its reason (or handled, where the table says so), nothing is left to loop, and the same
consumer still takes new messages.

What each kind of bad input leads to on each engine is the table ``OUTCOMES`` (the same
table is in docs/guarantees.md, "Bad input and misbehaving handlers"): a change of
behaviour changes a row, not the test.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import BaseModel

from microhive import MicroAgent, Namespace, Queue, QueueBroker, consumer
from microhive.broker import DeadLetter
from microhive.codecs import JsonCodec
from microhive.envelope import Envelope, Kind

from .conftest import Factory, Transport
from .helpers import eventually
from .plain_clients import TOMBSTONE, Moment, NotUtf8, Raw, publish

MAX_SIZE = 64 * 1024
"""The codec's limit in this test: small, so 'just over' and 'just under' are cheap."""

GOOD = 1000
TAG = 1_000_000
"""Bad messages that carry a payload carry ``n = TAG + their row``, to be found again."""

# outcomes
HANDLED = "handled"  # the handler got the payload of the envelope
ADOPTED = "adopted"  # the handler got the whole body as its payload (a foreign message)
UNDECODABLE = "undecodable message"  # dead-lettered at once, the reason starts so
INVALID = "invalid payload"  # decoded, but does not fit the handler: dead-lettered at once

ENGINES = ("memory", "redis", "amqp", "nats", "kafka")

# fmt: off
OUTCOMES: dict[str, tuple[str, str, str, str, str]] = {
    #  kind                         memory       redis        amqp         nats         kafka
    "undecodable bytes":          (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "empty body":                 (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "plain text":                 (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "deep nesting":               (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "deep nesting in payload":    (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "just over max_size":         (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "exactly max_size":           (HANDLED,     HANDLED,     HANDLED,     HANDLED,     HANDLED),
    "invalid UTF-8":              (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "lone surrogate escape":      (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "trailing garbage":           (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "NaN literal":                (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "array":                      (INVALID,     UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "string":                     (INVALID,     UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "number":                     (INVALID,     UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "null":                       (INVALID,     UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "foreign JSON object":        (ADOPTED,     UNDECODABLE, ADOPTED,     UNDECODABLE, UNDECODABLE),
    "kind of a wrong type":       (UNDECODABLE, UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "unknown kind":               (UNDECODABLE, UNDECODABLE, INVALID,     UNDECODABLE, UNDECODABLE),
    "name of a wrong type":       (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "empty name":                 (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "headers of a wrong type":    (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "attempt of a wrong type":    (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "attempt zero":               (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "sent_at of a wrong type":    (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "sent_at beyond a float":     (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "attempt beyond 64 bits":     (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "id of a wrong type":         (UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "wire version 2":             (INVALID,     UNDECODABLE, UNDECODABLE, UNDECODABLE, UNDECODABLE),
    "duplicated fields":          (HANDLED,     HANDLED,     HANDLED,     HANDLED,     HANDLED),
    "unknown queue name":         (HANDLED,     HANDLED,     HANDLED,     HANDLED,     HANDLED),
    "signal kind on a queue":     (HANDLED,     HANDLED,     HANDLED,     HANDLED,     HANDLED),
    "payload misfit":             (INVALID,         INVALID,     INVALID,     INVALID,     INVALID),
    "payload not an object":      (INVALID,         INVALID,     INVALID,     INVALID,     INVALID),
    "schema violation":           (INVALID,         INVALID,     INVALID,     INVALID,     INVALID),
    "integers beyond 64 bits":    (HANDLED,     HANDLED,     HANDLED,     HANDLED,     HANDLED),
}
"""Kinds every engine gets; the engine's own framing adds the rows of ``FRAMING``."""

FRAMING: dict[str, dict[str, str]] = {
    "redis": {
        "stream entry without data":   UNDECODABLE,
        "data beside other fields":    HANDLED,
    },
    "amqp": {
        "headers of every AMQP type":  HANDLED,
        "timestamp beyond year 9999":  ADOPTED,
        "header timestamp beyond 9999": HANDLED,
        "message_id not UTF-8":        ADOPTED,
        "header name not UTF-8":       HANDLED,
    },
    "nats": {
        "due header beyond a float":   HANDLED,
        "due header not a number":     HANDLED,
        "status line not UTF-8":       HANDLED,
    },
    "kafka": {
        "null record value":           UNDECODABLE,
        "attempt header not ASCII":    HANDLED,
        "attempt header of 5000 digits": HANDLED,
    },
}
# fmt: on

DELIVERY = {
    "memory": "exactly-once",
    "redis": "at-least-once",
    "amqp": "at-least-once",
    "nats": "at-least-once",
    "kafka": "at-least-once",
}
"""How often a good message may reach the handler around the bad ones (no crash here, so
duplicates are not expected elsewhere either, but only memory promises none)."""


# Rows of OUTCOMES an engine has changed since: one dict per engine, so that work on one
# engine never touches the lines of another.

MEMORY_CHANGED: dict[str, str] = {}

REDIS_CHANGED: dict[str, str] = {
    # issue 12: a body that is not an envelope is adopted as the payload (the entry's fields
    # without ``data`` too), and the handler decides whether it fits
    "array": INVALID,
    "string": INVALID,
    "number": INVALID,
    "null": INVALID,
    "foreign JSON object": ADOPTED,
    "wire version 2": INVALID,
    "stream entry without data": INVALID,
}

AMQP_CHANGED: dict[str, str] = {  # issue 12: an envelope is a body with "v": 1, or marked
    "kind of a wrong type": UNDECODABLE,
    "unknown kind": UNDECODABLE,
    "wire version 2": INVALID,
}

NATS_CHANGED: dict[str, str] = {  # issue 12: an envelope is marked, or a body with "v": 1
    "array": INVALID,
    "string": INVALID,
    "number": INVALID,
    "null": INVALID,
    "foreign JSON object": ADOPTED,
    "wire version 2": INVALID,
}

KAFKA_CHANGED: dict[str, str] = {
    # adoption (issue 12): an unmarked JSON value that is not a v1 envelope is the payload
    "array": INVALID,
    "string": INVALID,
    "number": INVALID,
    "null": INVALID,
    "foreign JSON object": ADOPTED,
    "wire version 2": INVALID,
}

CHANGED = {
    "memory": MEMORY_CHANGED,
    "redis": REDIS_CHANGED,
    "amqp": AMQP_CHANGED,
    "nats": NATS_CHANGED,
    "kafka": KAFKA_CHANGED,
}


def outcomes(engine: str) -> dict[str, str]:
    """The table's column for ``engine``, with its framing rows and changed rows."""
    column = ENGINES.index(engine)
    found = {kind: row[column] for kind, row in OUTCOMES.items()}
    return found | FRAMING.get(engine, {}) | CHANGED.get(engine, {})


DOCS = Path(__file__).parents[2] / "docs" / "guarantees.md"
WORDS = {
    "handled": HANDLED,
    "adopted": ADOPTED,
    "dead: undecodable": UNDECODABLE,
    "dead: invalid payload": INVALID,
}


def documented(engine: str) -> dict[str, str]:
    """The column of ``engine`` in the table of docs/guarantees.md (the same as ours)."""
    text = DOCS.read_text().split("<!-- bad-input-table -->")[1].split("<!-- /bad-input-table")[0]
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 + len(ENGINES) and cells[2] in WORDS:  # kind, sent, engines...
            found[cells[0]] = WORDS[cells[2 + ENGINES.index(engine)]]
        elif len(cells) == 4 and cells[0] == engine:  # engine, kind, sent, outcome
            found[cells[1]] = WORDS[cells[3]]
    return found


class Order(BaseModel):
    n: int


QUEUES = Namespace([Queue("jobs"), Queue("orders", schema=Order)], kind="queue")
CODEC = JsonCodec(max_size=MAX_SIZE)


class Sink(MicroAgent):
    """Records what it handles; no retries, so an unexpected failure is a visible dead letter."""

    @consumer(QUEUES.jobs, concurrency=8, retries=0)
    async def job(self, *, n: int, big: int | None = None, pad: str = "") -> None:
        self.settings["handled"].append(n)
        if big is not None:
            self.settings["big"][n] = big

    @consumer(QUEUES.orders, concurrency=2, retries=0)
    async def order(self, order: Order) -> None:
        self.settings["handled"].append(order.n)


WRITER = JsonCodec(max_size=2 * MAX_SIZE)
"""Writes the test's messages, the oversized one too."""


def envelope(payload: object, name: str = "jobs", kind: Kind = Kind.MESSAGE) -> bytes:
    return WRITER.encode(Envelope(kind, name, payload, "foreign", sent_at=1.5e9))


def document(n: int, **fields: str) -> bytes:
    """A hand-written envelope whose fields are given as JSON text."""
    values = {"v": "1", "kind": '"message"', "name": '"jobs"', "payload": f'{{"n": {n}}}'}
    values.update(fields)
    return ("{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}").encode()


def sized(n: int, size: int) -> bytes:
    """An envelope of exactly ``size`` bytes (a long string in the payload)."""
    base = envelope({"n": n, "pad": ""})
    data = envelope({"n": n, "pad": "x" * (size - len(base))})
    assert len(data) == size
    return data


@dataclass(frozen=True)
class Bad:
    queue: str
    message: Raw
    payload_n: int | None = None
    """The ``n`` the handler sees if it takes this message."""
    big: int | None = None


def bad_messages() -> dict[str, Callable[[int], Bad]]:
    """How to make each kind of bad message; ``n`` is its tag."""
    deep = b"[" * 5000 + b"]" * 5000

    def plain(body: bytes, n: int | None = None, queue: str = "jobs") -> Bad:
        return Bad(queue, Raw(body), n)

    def framed(n: int, **headers: str) -> Bad:
        return Bad("jobs", Raw(envelope({"n": n}), headers=headers), n)

    return {
        "undecodable bytes": lambda n: plain(b"\xff\xfe\x00\x81 not json %d" % n),
        "empty body": lambda n: plain(b""),
        "plain text": lambda n: plain(b"hello, consumer %d" % n),
        "deep nesting": lambda n: plain(deep),
        "deep nesting in payload": lambda n: plain(document(n, payload=deep.decode())),
        "just over max_size": lambda n: plain(sized(n, MAX_SIZE + 1)),
        "exactly max_size": lambda n: plain(sized(n, MAX_SIZE), n),
        "invalid UTF-8": lambda n: plain(document(n, sender='"?"').replace(b'"?"', b'"\xff\xfe"')),
        "lone surrogate escape": lambda n: plain(document(n, sender=r'"\ud800"')),
        "trailing garbage": lambda n: plain(envelope({"n": n}) + b" }"),
        "NaN literal": lambda n: plain(document(n, payload=f'{{"n": {n}, "big": NaN}}')),
        "array": lambda n: plain(b'[{"n": %d}]' % n),
        "string": lambda n: plain(b'"n = %d"' % n),
        "number": lambda n: plain(b"%d" % n),
        "null": lambda n: plain(b"null"),
        "foreign JSON object": lambda n: plain(b'{"n": %d}' % n, n),
        "kind of a wrong type": lambda n: plain(document(n, kind="5")),
        "unknown kind": lambda n: plain(document(n, kind='"event"')),
        "name of a wrong type": lambda n: plain(document(n, name="5")),
        "empty name": lambda n: plain(document(n, name='""')),
        "headers of a wrong type": lambda n: plain(document(n, headers='["a"]')),
        "attempt of a wrong type": lambda n: plain(document(n, attempt='"1"')),
        "attempt zero": lambda n: plain(document(n, attempt="0")),
        "sent_at of a wrong type": lambda n: plain(document(n, sent_at='"now"')),
        "sent_at beyond a float": lambda n: plain(document(n, sent_at="1" + "0" * 400)),
        "attempt beyond 64 bits": lambda n: plain(
            document(n, attempt=str(2**70), payload=f'{{"m": {n}}}')
        ),
        "id of a wrong type": lambda n: plain(document(n, id="7")),
        "wire version 2": lambda n: plain(document(n, v="2")),
        "duplicated fields": lambda n: plain(
            document(n).replace(b'"payload"', b'"payload": {"n": -1}, "payload"'), n
        ),
        "unknown queue name": lambda n: plain(envelope({"n": n}, name="no-such-queue"), n),
        "signal kind on a queue": lambda n: plain(envelope({"n": n}, kind=Kind.SIGNAL), n),
        "payload misfit": lambda n: plain(envelope({"m": n})),
        "payload not an object": lambda n: plain(envelope([n])),
        "schema violation": lambda n: plain(envelope({"n": f"#{n}"}, "orders"), queue="orders"),
        "integers beyond 64 bits": lambda n: Bad(
            "jobs", Raw(envelope({"n": n, "big": -(2**100) - n})), n, -(2**100) - n
        ),
        # engines' own framing
        "stream entry without data": lambda n: Bad(
            "jobs", Raw(b"", fields=((b"body", envelope({"n": n})),))
        ),
        "data beside other fields": lambda n: Bad(
            "jobs",
            Raw(b"", fields=((b"data", envelope({"n": n})), (b"source", b"foreign"))),
            n,
        ),
        "headers of every AMQP type": lambda n: Bad(
            "jobs",
            Raw(
                envelope({"n": n}),
                headers={"x-attempt": "x", "x-reason": "", "nested": {"a": [1, 2.5, None, True]}},
            ),
            n,
        ),
        "timestamp beyond year 9999": lambda n: Bad(
            "jobs",
            Raw(b'{"n": %d}' % n, timestamp=Moment.at(2**63)),
            n,
        ),
        "header timestamp beyond 9999": lambda n: Bad(
            "jobs",
            Raw(envelope({"n": n}), headers={"at": Moment.at(2**63)}),
            n,
        ),
        "message_id not UTF-8": lambda n: Bad(
            "jobs", Raw(b'{"n": %d}' % n, message_id=NotUtf8.of(b"id-\xff\xfe")), n
        ),
        "header name not UTF-8": lambda n: Bad(
            "jobs", Raw(envelope({"n": n}), headers={NotUtf8.of(b"x-\xc3"): "value"}), n
        ),
        "due header beyond a float": lambda n: framed(n, **{"Microhive-Due": "9" * 400}),
        "due header not a number": lambda n: framed(n, **{"Microhive-Due": "soon"}),
        "status line not UTF-8": lambda n: Bad(
            "jobs", Raw(envelope({"n": n}), header_block=b"NATS/1.0 503 \xff\xfe\r\n\r\n"), n
        ),
        "null record value": lambda n: Bad("jobs", Raw(b"", headers={TOMBSTONE: "1"})),
        "attempt header not ASCII": lambda n: framed(n, **{"microhive-attempt": "²"}),
        "attempt header of 5000 digits": lambda n: framed(n, **{"microhive-attempt": "9" * 5000}),
    }


def good(n: int) -> Bad:
    """A valid message; every seventh carries an integer beyond 64 bits."""
    if n % 10 == 0:
        return Bad("orders", Raw(envelope({"n": n}, "orders")), n)
    big = 2**64 + n if n % 7 == 0 else None
    payload = {"n": n} if big is None else {"n": n, "big": big}
    return Bad("jobs", Raw(envelope(payload)), n, big)


async def _settled(broker: QueueBroker, expected_letters: int) -> list[DeadLetter] | None:
    """All dead letters there and nothing left in either queue (so nothing can loop)."""
    letters = [
        letter
        for queue in ("jobs", "orders")
        for letter in await broker.dead_letters(queue, limit=1000)
    ]
    if len(letters) < expected_letters:
        return None
    for queue in ("jobs", "orders"):
        if await broker.length(queue) != 0:
            return None
    return letters


async def test_bad_input_from_outside_never_stalls_a_consumer(
    factory: Factory, transport: Transport, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    engine = transport.name
    table = outcomes(engine)
    assert documented(engine) == table, "docs/guarantees.md says the same as OUTCOMES"
    makers = bad_messages()
    bad = {kind: makers[kind](TAG + row) for row, kind in enumerate(table)}
    goods = [good(n) for n in range(GOOD)]

    # the bad messages spread evenly among the good ones, per queue in sending order
    spacing = GOOD // len(bad)
    spread = list(bad.values())
    order: list[Bad] = []
    for n, message in enumerate(goods):
        order.append(message)
        if n % spacing == 0 and n // spacing < len(spread):
            order.append(spread[n // spacing])

    broker = await factory.broker(queues=QUEUES, codec=CODEC)
    sink = Sink(broker=broker, settings={"handled": [], "big": {}})
    async with sink:  # consuming: the queues exist, the plain clients only publish
        for queue in ("jobs", "orders"):
            await publish(engine, url, queue, [b.message for b in order if b.queue == queue])

        dead = {kind: b for kind, b in bad.items() if table[kind] in (UNDECODABLE, INVALID)}
        letters = await eventually(lambda: _settled(broker, len(dead)), timeout=60)

        # every good message, and the bad ones the table says are handled, reached the handler
        taken = {kind: b for kind, b in bad.items() if table[kind] in (HANDLED, ADOPTED)}
        expected = [b.payload_n for b in [*goods, *taken.values()] if b.payload_n is not None]
        handled = Counter(sink.settings["handled"])
        assert sorted(handled) == sorted(expected), _missing(handled, expected)
        if DELIVERY[engine] == "exactly-once":
            assert set(handled.values()) == {1}
        for b in [*goods, *taken.values()]:
            if b.big is not None:
                assert sink.settings["big"][b.payload_n] == b.big, "big integers arrive exactly"

        # every bad one dead-lettered exactly once, with the reason of its row
        raw_of = {kind: _raw(b.message) for kind, b in dead.items()}
        assert Counter(letter.raw for letter in letters) == Counter(raw_of.values())
        reasons: dict[bytes, list[str]] = {}  # two rows may keep the same raw (b"")
        for letter in letters:
            reasons.setdefault(letter.raw, []).append(letter.reason)
        for kind, raw in raw_of.items():
            assert any(r.startswith(table[kind]) for r in reasons[raw]), (kind, reasons[raw])

        # the same consumer still takes a new message
        await broker.send("jobs", {"n": -7})
        await eventually(lambda: -7 in sink.settings["handled"])

    broken = [r for r in caplog.records if r.exc_info and not r.name.startswith("microhive.agent")]
    assert not broken, [f"{r.name}: {r.getMessage()}" for r in broken]


def _raw(message: Raw) -> bytes:
    """What the engine's dead-letter store keeps of a message."""
    if message.fields is not None:
        return dict(message.fields).get(b"data", b"")
    return message.body


def _missing(handled: Counter[int], expected: list[int]) -> str:
    lost = sorted(set(expected) - set(handled))
    extra = sorted(set(handled) - set(expected))
    return f"not handled: {lost[:20]} ({len(lost)}); unexpected: {extra[:20]}"

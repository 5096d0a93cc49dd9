"""Over generated catalogs and agents: every document validates against the official schema
and has one channel per declaration (bound exchanges where the broker routes), one operation per
receiver signal, consumer and catalog send."""

from __future__ import annotations

import keyword
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microhive import MicroAgent, private_catalog
from microhive.agent.decorators import consumer, receiver
from microhive.asyncapi import describe
from microhive.catalog import Catalog, parse_catalog
from microhive.declarations import RESERVED_ARGUMENTS, SHADOWING_NAMES

from .official import check

NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z0-9_-]{1,4})?", fullmatch=True).filter(
    lambda n: n not in SHADOWING_NAMES
)
ARGUMENTS = st.lists(
    st.from_regex(r"[a-z_][a-z0-9_]{0,5}", fullmatch=True).filter(
        lambda a: a not in RESERVED_ARGUMENTS and not keyword.iskeyword(a)
    ),
    unique=True,
    max_size=4,
)
KEYS = st.from_regex(r"([a-z]{1,3}|\*|#)(\.([a-z]{1,3}|\*|#)){0,2}", fullmatch=True) | st.just("")
TRANSPORTS = st.sampled_from(
    [
        ("memory://", "memory://"),
        ("redis://127.0.0.1/0?prefix=p:", "redis://127.0.0.1/0?prefix=p:"),
        ("amqp://127.0.0.1/vh?prefix=x.", "amqp://127.0.0.1/vh?prefix=x."),
        ("nats://127.0.0.1?prefix=n", "nats://127.0.0.1?prefix=n"),
        ("nats://127.0.0.1", "kafka://127.0.0.1?prefix=k"),
    ]
)


@st.composite
def catalogs(draw: st.DrawFn) -> dict[str, Any]:
    signals = draw(st.lists(NAMES, unique=True, max_size=5))
    exchanges = draw(st.lists(NAMES, unique=True, max_size=3))
    queues = draw(st.lists(NAMES, unique=True, max_size=5))
    types = st.sampled_from(["direct", "fanout", "topic"])
    bindings = st.lists(
        st.fixed_dictionaries({"exchange": st.sampled_from(exchanges), "key": KEYS})
    )
    return {
        "version": 1,
        "signals": [{"name": n, "providing_args": draw(ARGUMENTS)} for n in signals],
        "exchanges": [{"name": n, "type": draw(types)} for n in exchanges],
        "queues": [{"name": n, "bindings": draw(bindings) if exchanges else []} for n in queues],
    }


def agent_of(catalog: Catalog, receives: list[int], consumes: list[int], sends: bool) -> type:
    """An agent class receiving and consuming some of the catalog's declarations."""
    signals, queues = list(catalog.signals.values()), list(catalog.queues.values())
    body: dict[str, Any] = {"catalog": catalog if sends else None}
    for index in receives:

        async def on_signal(self: Any, **kw: Any) -> None:
            pass

        body[f"on_{index}"] = receiver(signals[index % len(signals)])(on_signal)
    for index in consumes:

        async def on_message(self: Any, *payload: Any, **kw: Any) -> None:
            pass

        body[f"take_{index}"] = consumer(queues[index % len(queues)])(on_message)
    return type("Generated", (MicroAgent,), body)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=catalogs(),
    transport=TRANSPORTS,
    receives=st.lists(st.integers(0, 9), unique=True, max_size=3),
    consumes=st.lists(st.integers(0, 9), unique=True, max_size=3),
    sends=st.booleans(),
)
def test_every_generated_document_validates(
    document: dict[str, Any],
    transport: tuple[str, str],
    receives: list[int],
    consumes: list[int],
    sends: bool,
) -> None:
    bus, broker = transport
    with private_catalog():
        catalog = parse_catalog(document)
        if not catalog.signals:
            receives = []
        if not catalog.queues:
            consumes = []
        agent = agent_of(catalog, receives, consumes, sends)
        found = describe([agent], catalog, bus=bus, broker=broker)
    check(found)
    routing = broker.startswith(("memory", "amqp"))
    used = {b["exchange"] for q in document["queues"] for b in q["bindings"]}
    expected = {
        *(f"signal.{s['name']}" for s in document["signals"]),
        *(f"queue.{q['name']}" for q in document["queues"]),
        *(f"exchange.{e}" for e in used if routing),
        *(["replies"] if document["signals"] else []),
    }
    assert set(found["channels"]) == expected
    sent = len(catalog.signals) + len(catalog.queues) if sends else 0
    # one operation per receiver method and signal, per consumer, per catalog declaration
    assert len(found["operations"]) == len(receives) + len(consumes) + sent
    actions = [operation["action"] for operation in found["operations"].values()]
    assert actions.count("send") == sent

"""The validation the other tests rely on: the official 3.0.0 schema, and that it can fail."""

from __future__ import annotations

import copy
from typing import Any

from microhive.asyncapi import describe

from . import agents
from .official import SCHEMA_ID, check, official_schema, reference_errors, schema_errors


def document() -> dict[str, Any]:
    return describe(agents.AGENTS, agents.CATALOG, bus="amqp://h/v", broker="kafka://h:9092")


def test_the_schema_is_asyncapi_3_0_0_with_its_bindings() -> None:
    schema = official_schema()
    assert schema["$id"] == SCHEMA_ID
    assert schema["properties"]["asyncapi"]["const"] == "3.0.0"
    bindings = {key for key in schema["definitions"] if "/bindings/" in key}
    assert "http://asyncapi.com/bindings/amqp/0.3.0/channel.json" in bindings
    assert "http://asyncapi.com/bindings/kafka/0.5.0/operation.json" in bindings


def test_a_generated_document_is_valid() -> None:
    check(document())


def test_the_schema_rejects_broken_documents() -> None:
    def broken(change: Any) -> list[str]:
        found = document()
        change(found)
        return schema_errors(found)

    assert broken(lambda d: d.update(asyncapi="2.6.0"))
    assert broken(lambda d: d["operations"]["Shop.take"].update(action="publish"))
    assert broken(lambda d: d["channels"]["queue.orders"].update(kind="queue"))
    assert broken(lambda d: d["channels"]["signal.user_enter"]["bindings"]["amqp"].update(is_="x"))
    assert broken(lambda d: d["channels"]["queue.orders"]["bindings"]["kafka"].update(partitions=0))
    assert broken(lambda d: d["servers"]["bus"].pop("protocol"))
    assert broken(lambda d: d["components"]["messages"]["queue.orders"].update(kind="message"))


def test_references_are_checked_beyond_the_schema() -> None:
    found = document()
    assert reference_errors(found) == []
    dangling = copy.deepcopy(found)
    dangling["operations"]["Shop.take"]["messages"][0]["$ref"] += "x"
    assert reference_errors(dangling)
    elsewhere = copy.deepcopy(found)
    elsewhere["operations"]["Shop.take"]["messages"] = [
        {"$ref": "#/channels/queue.reports/messages/queue.reports"}
    ]
    assert reference_errors(elsewhere)
    key = copy.deepcopy(found)
    key["components"]["schemas"]["bad key!"] = {}
    assert reference_errors(key)

"""Reading exported spans and checking that they form one trace, hop by hop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from microhive.observability.export import as_dict

Span = dict[str, Any]


def read_lines(path: Path) -> list[Span]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def from_sdk(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> list[Span]:
    return [as_dict(span) for span in spans]


def named(spans: list[Span], name: str) -> Span:
    found = [span for span in spans if span["name"] == name]
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s['name'] for s in spans]}"
    return found[0]


def check_one_trace(spans: list[Span]) -> dict[str, Span]:
    """One trace id; every process span's parent is the publish span of its message; every
    publish span but the first is the child of the process span that sent it. Returns the
    spans by name."""
    assert len({span["trace_id"] for span in spans}) == 1, "one trace across every hop"
    by_id = {span["span_id"]: span for span in spans}
    publishes = {
        span["attributes"]["messaging.message.id"]: span
        for span in spans
        if span["kind"] == "PRODUCER"
    }
    for span in spans:
        if span["kind"] == "CONSUMER":
            sent_by = publishes[span["attributes"]["messaging.message.id"]]
            assert span["parent_span_id"] == sent_by["span_id"], span["name"]
            assert span["attributes"]["messaging.operation.type"] == "process"
    roots = [span for span in spans if span["parent_span_id"] not in by_id]
    assert [root["name"] for root in roots] == ["obs.post publish"], "one root: the post"
    for span in spans:
        if span["kind"] == "PRODUCER" and span is not roots[0]:
            assert by_id[span["parent_span_id"]]["kind"] == "CONSUMER", span["name"]
    return {span["name"]: span for span in spans}


EXPECTED = {
    # name: (kind, name of the parent)
    "obs.post publish": ("PRODUCER", None),
    "obs.post process": ("CONSUMER", "obs.post publish"),
    "obs.work publish": ("PRODUCER", "obs.post process"),
    "obs.work process": ("CONSUMER", "obs.work publish"),
    "obs.ask publish": ("PRODUCER", "obs.work process"),
    "obs.ask process": ("CONSUMER", "obs.ask publish"),
    "(temporary) publish": ("PRODUCER", "obs.ask process"),
    "obs.done publish": ("PRODUCER", "obs.work process"),
    "obs.done process": ("CONSUMER", "obs.done publish"),
}


def check_shape(spans: list[Span]) -> dict[str, Span]:
    """The spans of one post through tests.observability.agents, and their tree."""
    assert sorted(span["name"] for span in spans) == sorted(EXPECTED)
    by_name = check_one_trace(spans)
    by_id = {span["span_id"]: span for span in spans}
    for name, (kind, parent) in EXPECTED.items():
        span = by_name[name]
        assert span["kind"] == kind, name
        found = by_id.get(span["parent_span_id"])
        assert (found["name"] if found else None) == parent, name
        assert span["status"] != "ERROR", name
    return by_name

"""Message schemas: the v1 envelope around each declaration's payload.

A non-microhive service reads the message payload of an AsyncAPI message as the whole JSON
envelope (docs/wire-format.md), with the declared arguments or the pydantic model inside its
``payload`` key. Pydantic models go through one ``models_json_schema`` call so that nested
models of the same name from different modules get distinct component names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..declarations import Exchange, Queue, Signal
from ..errors import ConfigurationError

COMPONENTS = "#/components/schemas/"
ENVELOPE = "microhive.Envelope"
REPLY = "microhive.Reply"


def envelope_schema() -> dict[str, Any]:
    """The envelope as docs/wire-format.md states it: what a decoder requires and accepts."""
    return {
        "type": "object",
        "title": "microhive envelope, wire version 1",
        "description": (
            "Every microhive message is this JSON object (UTF-8). Only kind and name are "
            "required when decoding; microhive writes every key. Unknown keys are ignored."
        ),
        "required": ["kind", "name"],
        "properties": {
            "v": {"type": "integer", "const": 1, "default": 1, "description": "wire version"},
            "id": {"type": "string", "description": "unique id (32 lowercase hex digits)"},
            "kind": {"type": "string", "enum": ["signal", "message", "call", "reply"]},
            "name": {"type": "string", "minLength": 1, "description": "signal or queue name"},
            "sender": {"type": "string", "default": ""},
            "payload": {"description": "the declared arguments or value"},
            "headers": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "default": {},
            },
            "correlation_id": {"type": ["string", "null"], "default": None},
            "reply_to": {"type": ["string", "null"], "default": None},
            "sent_at": {"type": "number", "description": "Unix seconds", "default": 0.0},
            "attempt": {"type": "integer", "minimum": 1, "default": 1},
        },
    }


def reply_schema() -> dict[str, Any]:
    """A reply's payload: the receiver's return value, or the exception it raised."""
    return {
        "title": "call result",
        "oneOf": [
            {
                "type": "object",
                "required": ["ok"],
                "properties": {"ok": {"const": True}, "value": {}},
            },
            {
                "type": "object",
                "required": ["ok"],
                "properties": {
                    "ok": {"const": False},
                    "error": {
                        "type": "object",
                        "properties": {
                            "type": {"type": "string", "description": "exception class name"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        ],
    }


def arguments_schema(signal: Signal) -> dict[str, Any]:
    """Exactly the declared names: the sender refuses missing and undeclared ones."""
    return {
        "type": "object",
        "title": f"{signal.name} arguments",
        "properties": {name: {} for name in signal.providing_args},
        "required": list(signal.providing_args),
        "additionalProperties": False,
    }


class Schemas:
    """``components/schemas``, filled from the declarations and their pydantic models."""

    def __init__(self, signals: Iterable[Signal], queues: Iterable[Queue]) -> None:
        self.components: dict[str, Any] = {ENVELOPE: envelope_schema()}
        signals = list(signals)
        models: dict[type[BaseModel], None] = {}
        declared: list[Signal | Queue] = [*signals, *queues]
        for item in declared:
            if item.schema is not None:
                models[item.schema] = None
        self._models = self._pydantic(list(models))
        self._signals: dict[str, str] = {}
        for signal in signals:
            if signal.schema is None:
                key = self._add(f"arguments.{signal.name}", arguments_schema(signal))
                self._signals[signal.name] = COMPONENTS + key
        if signals:
            self._add(REPLY, reply_schema())

    def _pydantic(self, models: list[type[BaseModel]]) -> dict[type[BaseModel], str]:
        if not models:
            return {}
        try:
            refs, found = models_json_schema(
                [(model, "validation") for model in models], ref_template=COMPONENTS + "{model}"
            )
        except Exception as exc:  # pydantic's errors for types JSON Schema cannot express
            names = ", ".join(model.__name__ for model in models)
            raise ConfigurationError(f"cannot describe the schemas ({names}): {exc}") from None
        for key, schema in found.get("$defs", {}).items():
            self._add(key, schema, rename=False)
        return {
            model: ref["$ref"] for model in models for key, ref in refs.items() if key[0] is model
        }

    def _add(self, key: str, schema: dict[str, Any], *, rename: bool = True) -> str:
        base, number = key, 1
        while key in self.components:
            if not rename:  # cannot happen: pydantic's keys have no dots, ours all do
                raise ConfigurationError(f"two schemas would be called {key!r}")
            number += 1
            key = f"{base}_{number}"
        self.components[key] = schema
        return key

    def signal_payload(self, signal: Signal) -> dict[str, Any]:
        if signal.schema is not None:
            return {"$ref": self._models[signal.schema]}
        return {"$ref": self._signals[signal.name]}

    def queue_payload(self, queue: Queue) -> dict[str, Any]:
        if queue.schema is not None:
            return {"$ref": self._models[queue.schema]}
        return {"description": "any JSON value (the queue declares no schema)"}


def wrapped(
    kind: str, name: str, payload: dict[str, Any], *, required: Iterable[str] = ()
) -> dict[str, Any]:
    """The envelope schema with this kind, name and payload: what one AsyncAPI message
    carries on the wire."""
    return {
        "allOf": [
            {"$ref": COMPONENTS + ENVELOPE},
            {
                "type": "object",
                "required": ["kind", "name", *required],
                "properties": {
                    "kind": {"const": kind},
                    "name": {"const": name},
                    "payload": payload,
                },
            },
        ]
    }


def signal_message(signal: Signal, schemas: Schemas) -> dict[str, Any]:
    payload = schemas.signal_payload(signal)
    return {
        "name": f"signal.{signal.name}",
        "title": f"signal {signal.name}",
        "summary": "A broadcast to every receiver of the signal; nobody answers.",
        "payload": wrapped("signal", signal.name, payload, required=["payload"]),
    }


def call_message(signal: Signal, schemas: Schemas) -> dict[str, Any]:
    payload = schemas.signal_payload(signal)
    call = wrapped("call", signal.name, payload, required=["payload", "correlation_id", "reply_to"])
    call["allOf"][1]["properties"].update(
        {"correlation_id": {"type": "string"}, "reply_to": {"type": "string"}}
    )
    return {
        "name": f"call.{signal.name}",
        "title": f"call {signal.name}",
        "summary": (
            "The signal sent as a request: every receiver (each method of each agent "
            "instance) answers with a reply to reply_to, matched by correlation_id (= id)."
        ),
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "payload": call,
    }


def reply_message(signal: Signal) -> dict[str, Any]:
    reply = wrapped(
        "reply", signal.name, {"$ref": COMPONENTS + REPLY}, required=["payload", "correlation_id"]
    )
    reply["allOf"][1]["properties"]["correlation_id"] = {"type": "string"}
    return {
        "name": f"reply.{signal.name}",
        "title": f"reply to {signal.name}",
        "summary": "A receiver's answer to a call: its return value or its exception.",
        "correlationId": {"location": "$message.payload#/correlation_id"},
        "payload": reply,
    }


def queue_message(queue: Queue, schemas: Schemas) -> dict[str, Any]:
    summary = "A work item: one consumer of the queue handles it, acknowledged after success."
    if queue.schema is not None:
        summary += f" Its payload is a {queue.schema.__name__} (validated by the consumer)."
    return {
        "name": f"queue.{queue.name}",
        "title": f"queue {queue.name}",
        "summary": summary,
        "payload": wrapped("message", queue.name, schemas.queue_payload(queue)),
    }


def exchange_message(exchange: Exchange) -> dict[str, Any]:
    message = wrapped(
        "message",
        exchange.name,
        {"description": "any JSON value; each bound queue's consumer checks its own schema"},
        required=["headers"],
    )
    message["allOf"][1]["properties"]["headers"] = {
        "type": "object",
        "required": ["x-routing-key"],
        "properties": {"x-routing-key": {"type": "string", "maxLength": 255}},
    }
    return {
        "name": f"exchange.{exchange.name}",
        "title": f"exchange {exchange.name} ({exchange.type})",
        "summary": (
            "Published with a routing key; the engine copies it into every bound queue "
            "whose binding matches. The envelope's name is the exchange's."
        ),
        "payload": message,
    }

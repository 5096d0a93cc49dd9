"""An AsyncAPI 3.0.0 document of agent classes and catalogs (``microhive asyncapi``).

Channels for signals, queues and exchanges with the addresses the chosen engine really uses,
operations per agent class, and message schemas wrapped in the v1 envelope, so a service
written without microhive can produce and consume from the document alone.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import orjson

from ..errors import ConfigurationError
from .document import declarations, describe

YAML_SUFFIXES = (".yaml", ".yml")


def render(document: dict[str, Any], path: str | None = None) -> bytes:
    """The document as JSON, or as YAML for a ``.yaml``/``.yml`` path when PyYAML is
    installed (microhive does not depend on it)."""
    if path is not None and Path(path).suffix.lower() in YAML_SUFFIXES:
        try:
            yaml: Any = importlib.import_module("yaml")
        except ImportError:
            raise ConfigurationError(
                f"{path}: YAML output needs PyYAML, which is not installed "
                "(pip install pyyaml), or write JSON: --out asyncapi.json"
            ) from None
        text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        return text.encode()
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


__all__ = ["declarations", "describe", "render"]

"""Opening and cleaning up a test's result store on its engine (memory, Redis, NATS)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from microhive.tasks.store import ResultStore
from microhive.tasks.stores.engines import open_engine_store

from .. import engines


def open_store(url: str) -> ResultStore:
    return open_engine_store(url)


def prefix_of(url: str) -> str:
    return str(dict(parse_qsl(urlsplit(url).query))["prefix"])


async def cleanup(url: str) -> None:
    """Delete what a test's store wrote (its key prefix on Redis, its buckets on NATS)."""
    if url.startswith("redis"):
        await engines.delete_prefix(url, prefix_of(url))

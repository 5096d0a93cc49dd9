"""Opening and cleaning up a test's result store on its engine (memory, Redis, NATS)."""

from __future__ import annotations

import contextlib
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
    elif url.startswith(("nats", "tls")):
        await delete_nats_store(url)


async def delete_nats_store(url: str) -> None:
    """The bucket and the index stream of the store on ``url``."""
    import nats
    from nats.js.errors import NotFoundError

    from microhive.tasks.stores.nats_layout import Layout
    from microhive.transports.nats.options import parse

    options = parse(url)
    names = Layout(options)
    client = await nats.connect(list(options.servers), allow_reconnect=False)
    try:
        js = client.jetstream()
        for stream in (names.stream, names.index_stream):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await client.close()

"""Fixtures for the NATS tests: the shared server with a private prefix, private servers,
and helpers to read what consumer processes recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microhive.envelope import new_id

from .. import engines
from ..processes import records  # noqa: F401 - the fixture, for this package
from ..scenarios import NATS, Server, running


@pytest.fixture
def prefix() -> str:
    return f"mhtest_{new_id()[:10]}"


@pytest.fixture
async def nats_url(prefix: str) -> AsyncIterator[str]:
    """The shared NATS with a subject and stream prefix of this test's own; its streams are
    deleted after."""
    base = engines.require_nats()
    url = engines.with_query(base, prefix=prefix, ack_wait=2)
    yield url
    await engines.delete_nats_prefix(url, prefix)


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[Server]:
    """A private nats-server with JetStream on file storage, free to kill and restart."""
    yield from running(NATS, tmp_path)

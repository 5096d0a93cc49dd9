"""Fixtures for the Redis tests: the shared server with a private prefix, private servers,
and helpers to read what consumer processes recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microhive.envelope import new_id

from .. import engines
from ..processes import records  # noqa: F401 - the fixture, for this package
from ..scenarios import REDIS, Server, running


@pytest.fixture
def prefix() -> str:
    return f"microhive-test.{new_id()[:10]}:"


@pytest.fixture
async def redis_url(prefix: str) -> AsyncIterator[str]:
    """The shared Redis with a key prefix of this test's own; its keys are deleted after."""
    base = engines.require_redis()
    yield engines.with_query(base, prefix=prefix, claim_idle=2)
    await engines.delete_prefix(base, prefix)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Server]:
    """A private Redis with the append-only file on (fsync always), free to kill."""
    yield from running(REDIS, tmp_path)

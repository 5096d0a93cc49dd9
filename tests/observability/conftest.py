"""Metrics tests run on memory:// and on the Redis at 6379 (a key prefix per test)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest

from .. import engines


@pytest.fixture(params=["memory", "redis"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://obs-{secrets.token_hex(4)}"
        return
    engines.require_redis()
    prefix = f"mhtest-obs-{secrets.token_hex(5)}:"
    yield engines.with_query(engines.REDIS_URL, prefix=prefix, claim_idle=1)
    await engines.delete_prefix(engines.REDIS_URL, prefix)


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    engines.require_redis()
    prefix = f"mhtest-obs-{secrets.token_hex(5)}:"
    yield engines.with_query(engines.REDIS_URL, prefix=prefix)
    await engines.delete_prefix(engines.REDIS_URL, prefix)

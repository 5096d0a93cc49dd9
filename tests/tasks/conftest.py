"""Task tests on Redis with real processes: a key prefix per test, removed afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from microhive.envelope import new_id

from .. import engines


@pytest.fixture
async def url() -> AsyncIterator[str]:
    engines.require_redis()
    pytest.importorskip("microhive.tasks.stores.engines", reason="result stores not installed")
    prefix = f"microhive-test.tasks{new_id()[:8]}:"
    # entries a killed worker left pending are claimed by another after 1 s
    made = engines.with_query(engines.REDIS_URL, prefix=prefix, claim_idle=1)
    yield made
    await engines.delete_prefix(made, prefix)

"""Fixtures for the Kafka tests: the shared Tansu broker with a topic prefix of the test's
own (its topics are deleted after), and the records consumer processes write."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from microhive.envelope import new_id

from .. import engines
from ..processes import records  # noqa: F401 - the fixture, for this package


@pytest.fixture
def prefix() -> str:
    return f"mhtest_{new_id()[:10]}"


@pytest.fixture
async def kafka_url(prefix: str) -> AsyncIterator[str]:
    base = engines.require_kafka()
    url = engines.with_query(base, prefix=prefix, **engines.KAFKA_TEST_OPTIONS)
    yield url
    await engines.delete_kafka_prefix(url, prefix)

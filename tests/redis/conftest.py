"""Fixtures for the Redis tests: the shared server with a private prefix, private servers,
and helpers to read what consumer processes recorded."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from microhive.envelope import new_id

from .. import engines


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
def private_redis(tmp_path: Path) -> Iterator[engines.RedisServer]:
    """A private Redis with the append-only file on (fsync always), free to kill."""
    server = engines.RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Records:
    """Lines that consumer processes appended to ``<base>.<pid>`` files."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def files(self) -> list[Path]:
        return sorted(self.base.parent.glob(f"{self.base.name}.*"))

    def processed(self) -> Counter[int]:
        counts: Counter[int] = Counter()
        for path in self.files():
            if path.suffix in (".acked", ".failed"):
                continue
            counts.update(int(line) for line in path.read_text().split())
        return counts

    def by_pid(self, pid: int) -> list[int]:
        path = self.base.parent / f"{self.base.name}.{pid}"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def acked(self) -> set[int]:
        path = self.base.parent / f"{self.base.name}.acked"
        return {int(line) for line in path.read_text().split()} if path.exists() else set()

    def failed(self) -> list[str]:
        path = self.base.parent / f"{self.base.name}.failed"
        return path.read_text().splitlines() if path.exists() else []


@pytest.fixture
def records(tmp_path: Path) -> Records:
    return Records(tmp_path / "processed")

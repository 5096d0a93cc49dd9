"""Fixtures for the NATS tests: the shared server with a private prefix, private servers,
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
def private_nats(tmp_path: Path) -> Iterator[engines.NatsServer]:
    """A private nats-server with JetStream on file storage, free to kill and restart."""
    server = engines.NatsServer(tmp_path / "nats")
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

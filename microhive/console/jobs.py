"""Tasks and their states for the console: the recent job records of a result store
(``ResultStore.jobs()``), sampled every few ticks."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from ..tasks.store import JobRecord, ResultStore

RECENT = 100
"""Job records the console reads (newest first) at each sample."""


def _json(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "backslashreplace")


def record_data(record: JobRecord) -> dict[str, Any]:
    """One job as JSON: state, attempt, times, result or error."""
    return {
        "id": record.id,
        "queue": record.queue,
        "state": str(record.state),
        "attempt": record.attempt,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "result": _json(record.result),
        "error": (
            f"{record.error_type}: {record.error_message}"
            if record.error_type or record.error_message
            else None
        ),
        "progress": _json(record.progress),
        "members": len(record.members),
    }


class JobsFeed:
    """Samples a result store; ``own``: close it with the console."""

    def __init__(self, store: ResultStore, *, own: bool, every: int = 2) -> None:
        self.store = store
        self.own = own
        self.every = every
        self._ticks = 0
        self.latest: dict[str, Any] = {"at": None, "counts": {}, "recent": [], "error": None}

    async def sample(self) -> dict[str, Any] | None:
        """The latest jobs every ``every`` ticks (None between: nothing new to send)."""
        self._ticks += 1
        if (self._ticks - 1) % self.every:
            return None
        try:
            records = await self.store.jobs(limit=RECENT)
        except Exception as exc:  # the store's engine is down: say so, keep the last view
            self.latest = {**self.latest, "error": str(exc) or type(exc).__name__}
            return self.latest
        counts = Counter(str(record.state) for record in records)
        self.latest = {
            "at": time.time(),
            "counts": dict(counts),
            "recent": [record_data(record) for record in records],
            "error": None,
        }
        return self.latest

    async def listing(
        self, queue: str | None, state: str | None, limit: int
    ) -> list[dict[str, Any]]:
        from ..tasks.store import JobState

        chosen = JobState(state) if state else None
        records = await self.store.jobs(queue=queue or None, state=chosen, limit=limit)
        return [record_data(record) for record in records]

    async def close(self) -> None:
        if self.own:
            await self.store.close()

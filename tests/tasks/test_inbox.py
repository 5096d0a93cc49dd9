"""The Redis store's inbox bookkeeping (microhive/tasks/stores/redis_inbox.py), without Redis:
what it keeps for jobs nobody waits for yet is bounded, and a loss forgets expectations."""

from __future__ import annotations

import asyncio

from microhive.tasks.store import JobRecord, encode_record
from microhive.tasks.stores.redis_inbox import ARRIVED_BYTES, Inbox

RECHECK = b""


def record(job_id: str, size: int = 0) -> bytes:
    return encode_record(JobRecord(id=job_id, queue="q", result=b"x" * size))


async def test_records_nobody_waits_for_are_kept_within_a_count_and_a_size() -> None:
    inbox = Inbox(b"inbox", limit=100, recheck=RECHECK)
    inbox.subscribed()
    big = ARRIVED_BYTES // 10
    for index in range(30):
        inbox.expect(f"job{index}", inbox.generation)
        inbox.deliver(record(f"job{index}", big))
    kept = [index for index in range(30) if inbox.expects(f"job{index}")]
    assert kept and kept == list(range(30 - len(kept), 30))  # the newest, in a row
    assert sum(len(record(f"job{i}", big)) for i in kept) <= ARRIVED_BYTES
    assert await inbox.take("job29") == record("job29", big)
    assert await inbox.take("job0") == RECHECK  # dropped: the caller reads the store
    for index in range(200):  # its expectation lost (evicted, a reconnect): kept all the same
        inbox.deliver(record(f"small{index}"))
    assert inbox.expects("small199") and not inbox.expects("small99")  # the newest 100


async def test_a_loss_wakes_waiters_and_forgets_what_was_expected() -> None:
    inbox = Inbox(b"inbox", limit=100, recheck=RECHECK)
    inbox.subscribed()
    before = inbox.generation
    inbox.expect("a", before)
    inbox.expect("b", before)
    waiting = asyncio.create_task(inbox.take("a"))
    await asyncio.sleep(0)
    inbox.lost()
    assert await waiting == RECHECK
    assert not inbox.expects("b")
    inbox.expect("c", before)  # read before the loss: not trusted after it
    inbox.subscribed()
    assert not inbox.expects("c")
    inbox.expect("d", inbox.generation)
    inbox.deliver(record("d"))
    assert await inbox.take("d") == record("d")

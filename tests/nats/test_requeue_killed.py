"""A requeue of thousands of dead letters, SIGKILLed in the middle, loses nothing: each one
is published to the target before it is deleted from the dead stream, and running the
requeue again finishes the work. ``Nats-Msg-Id: requeue.<stream>.<sequence>`` makes the one
that was published but not yet deleted at the kill a duplicate JetStream drops."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import nats

from microhive import QueueBroker
from microhive.envelope import Envelope, Kind

from .. import engines
from ..cli.helpers import Process
from ..processes import until
from .requeuer import SOURCE, TARGET

LETTERS = 4000


async def _bury(url: str, prefix: str, broker: QueueBroker) -> None:
    """Dead letters as the consumer writes them: the envelope, the reason in headers."""
    client = await nats.connect(engines.require_nats())
    try:
        js = client.jetstream()
        subject = f"{prefix}.dead.nrqsource"
        for start in range(0, LETTERS, 200):
            acks = []
            for n in range(start, start + 200):
                body = broker.codec.encode(Envelope(Kind.MESSAGE, "nrqsource", {"n": n}))
                headers = {
                    "Microhive": "1",
                    "Microhive-Reason": "boom",
                    "Microhive-Attempt": "1",
                    "Microhive-Queue": "nrqsource",
                    "Microhive-Dead-At": repr(time.time()),
                }
                acks.append(js.publish(subject, body, headers=headers))
            await asyncio.gather(*acks)
    finally:
        await client.close()


async def _numbers(broker: QueueBroker, queue: Any, count: int) -> Counter[int]:
    """What the first ``count`` messages of ``queue`` carry (read with tail, not consumed)."""
    found: Counter[int] = Counter()
    if count == 0:
        return found
    replay = broker.tail(queue, last=count)
    async with asyncio.timeout(60):
        async for message in replay:
            found[message.payload["n"]] += 1
            if sum(found.values()) == count:
                break
    await replay.aclose()  # type: ignore[attr-defined]
    return found


async def test_a_requeue_killed_midway_loses_nothing(nats_url: str, prefix: str) -> None:
    async with QueueBroker.from_url(nats_url, queues=[SOURCE, TARGET]) as broker:
        await broker.declare()
        await _bury(nats_url, prefix, broker)
        assert len(await broker.nrqsource.dead.list(limit=LETTERS + 1)) == LETTERS
        requeuer = Process("-m", "tests.nats.requeuer", nats_url)
        try:
            await asyncio.to_thread(requeuer.wait_for_line, "requeuing", 20)
            await until(
                lambda: _at_least(broker, LETTERS // 10), 60, "a tenth of the letters requeued"
            )
            requeuer.popen.kill()
            assert requeuer.wait(timeout=10) == -9, "killed in the middle, not finished"
        finally:
            requeuer.kill()
        moved = await broker.nrqtarget.length()
        left = await broker.nrqsource.dead.list(limit=LETTERS + 1)
        assert 0 < moved < LETTERS and left, "the kill came in the middle"
        at_kill = await _numbers(broker, TARGET, moved)
        at_kill.update(letter.envelope.payload["n"] for letter in left if letter.envelope)
        assert set(at_kill) == set(range(LETTERS)), "nothing lost at the moment of the kill"
        in_both = sum(at_kill.values()) - LETTERS  # published, not yet deleted at the kill
        again = await broker.nrqsource.dead.requeue(to="nrqtarget")
        assert again == len(left)
        assert await broker.nrqsource.dead.list() == []
        total = await broker.nrqtarget.length()
        found = await _numbers(broker, TARGET, total)
    assert set(found) == set(range(LETTERS)), "every dead letter reached the target"
    duplicates = total - LETTERS
    print(
        f"requeue SIGKILLed after {moved} of {LETTERS}: {in_both} in both places at the "
        f"kill, {duplicates} duplicates after the second run"
    )
    assert duplicates == 0, "the message id made JetStream drop the copy published twice"


async def _at_least(broker: QueueBroker, count: int) -> bool:
    return await broker.nrqtarget.length() >= count

"""Delayed delivery on Kafka, which has none: a delay topic and a mover.

A delayed send or a retry with backoff is a record on the queue's delay topic with its due
time in the header ``microhive-due``. Every process that consumes the queue runs a mover,
in one consumer group per queue (``<prefix>.delayer.<queue>``, whatever the consumers'
group), so each delayed record is moved once. The mover reads the delay topic into a
heap ordered by due time — at most ``delay_buffer`` records, so a long delay does not hold
up a short one behind it — and when a record is due produces it to the queue's topic
(without the due header), then commits it. The due time lives in the record, so delays
survive restarts; a mover that dies between producing and committing moves a record twice
(at least once, like everything else).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from ...stopping import cancel_and_wait
from .offsets import Listener, Offsets, commit, pause_after_failure, stop
from .options import KafkaOptions
from .producer import Produce
from .wire import DUE, header, whole_number

log = logging.getLogger("microhive.kafka")

# (due in ms, tie-breaker, partition state, offset, key, value, headers without the due one)
Entry = tuple[int, int, Offsets, int, bytes | None, bytes, list[tuple[str, bytes]]]


class Mover:
    """Moves due records of one queue's delay topic to the queue's topic."""

    def __init__(self, options: KafkaOptions, produce: Produce, queue: str) -> None:
        self.options = options
        self.produce = produce
        self.queue = queue
        self.topic = options.topic(queue)
        self.limit = options.delay_buffer
        self.client = AIOKafkaConsumer(
            **options.common(),
            **options.group_settings(),
            group_id=options.delay_group(queue),
        )
        self.partitions: dict[Any, Offsets] = {}
        self.heap: list[Entry] = []
        self.counter = 0
        self.paused = False
        self.task: asyncio.Task[None] | None = None
        self._committing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<delay mover of {self.queue!r} on {self.options.safe_url}>"

    async def start(self) -> None:
        topic = self.options.delay_topic(self.queue)
        self.client.subscribe([topic], listener=Listener(self._revoked, self._assigned))
        await self.client.start()
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"microhive.kafka.mover.{self.queue}"
        )

    async def stop(self) -> None:
        await cancel_and_wait(self.task)  # again until it ends: a cancel may be lost
        with contextlib.suppress(Exception):
            await self.flush()
        await stop(self.client, repr(self))

    async def flush(self) -> None:
        async with self._committing:
            await commit(self.client, list(self.partitions.values()), repr(self))

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                wait = 1000
                if self.heap:
                    wait = max(0, min(wait, self.heap[0][0] - _now_ms()))
                self._pace()
                batch = await self.client.getmany(timeout_ms=wait, max_records=500)
                for tp, records in batch.items():
                    offsets = self.partitions.get(tp)
                    if offsets is not None:
                        self._hold(offsets, records)
                await self._move()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never end the loop
                failures += 1
                await pause_after_failure(failures, repr(self), exc)

    def _pace(self) -> None:
        """Stop reading while the heap is full; the records wait in the topic."""
        client = self.client
        if len(self.heap) >= self.limit and not self.paused:
            client.pause(*client.assignment())
            self.paused = True
        elif len(self.heap) < self.limit and self.paused:
            client.resume(*client.assignment())
            self.paused = False

    def _hold(self, offsets: Offsets, records: list[Any]) -> None:
        for record in records:
            if not offsets.take(record.offset):
                continue
            headers = list(record.headers or ())
            due = header(headers, DUE)
            rest = [(key, value) for key, value in headers if key != DUE]
            self.counter += 1
            when = whole_number(due) or 0
            entry = (when, self.counter, offsets, record.offset, record.key, record.value, rest)
            heapq.heappush(self.heap, entry)

    async def _move(self) -> None:
        now = _now_ms()
        due: list[Entry] = []
        while self.heap and self.heap[0][0] <= now:
            due.append(heapq.heappop(self.heap))
        if not due:
            return
        results = await asyncio.gather(
            *(self.produce(self.topic, e[5], e[4], e[6] or None) for e in due),
            return_exceptions=True,
        )
        failed = 0
        for entry, result in zip(due, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                retry = (now + 1000, *entry[1:])
                heapq.heappush(self.heap, retry)
            else:
                entry[2].done(entry[3])
        if failed:
            log.warning("%r: %d due messages could not be moved; trying again", self, failed)
        await self.flush()

    def _assigned(self, assigned: Any) -> None:
        for tp in assigned:
            self.partitions.setdefault(tp, Offsets(tp))

    async def _revoked(self, revoked: Any) -> None:
        lost = [self.partitions.pop(tp) for tp in revoked if tp in self.partitions]
        if not lost:
            return
        async with self._committing:
            await commit(self.client, lost, repr(self))
        for offsets in lost:
            offsets.live = False
        self.heap = [entry for entry in self.heap if entry[2].live]
        heapq.heapify(self.heap)


def _now_ms() -> int:
    return int(time.time() * 1000)

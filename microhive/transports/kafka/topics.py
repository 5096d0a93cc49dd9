"""The topics of a queue: created once per broker, and measured (bounds, group lag).

A queue has three topics (docs/transports/kafka.md): ``<prefix>.queue.<name>``
(``partitions`` partitions), ``<prefix>.delay.<name>`` and ``<prefix>.dead.<name>`` (one
each). microhive creates them on first use (or on ``declare()``); a topic that exists
already is taken as it is. A queue declared with ``address=`` lives on that topic verbatim;
its delay and dead-letter topics keep microhive's names of the queue's name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ...declarations import Queue
from ...errors import TransportError
from .link import Link
from .offsets import stop

TOPIC_EXISTS = TopicAlreadyExistsError.errno


class Topics:
    """Creates a broker's topics and reads their offsets (one inspecting consumer)."""

    def __init__(self, link: Link, declaration: Callable[[str], Queue]) -> None:
        self.link = link
        self.declaration = declaration  # a queue's declaration: its address
        self.options = link.options
        self.what = link.what
        self.created: dict[str, asyncio.Future[None]] = {}
        self.ready: set[str] = set()  # queues whose topics exist: every send looks here
        self._inspector: Any = None
        self._inspecting = asyncio.Lock()

    async def ensure(self, queue: str) -> None:
        """Create the queue's topics if missing (once per broker; a failure is tried again
        by the next call)."""
        known = self.created.get(queue)
        if known is not None:
            if not known.done():
                await asyncio.shield(known)
                return
            if known.exception() is None:
                return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.created[queue] = future
        try:
            await self._create(queue)
        except BaseException as exc:
            del self.created[queue]
            future.set_exception(exc)
            future.exception()  # retrieved: the next call tries again
            raise
        future.set_result(None)
        self.ready.add(queue)

    async def _create(self, queue: str) -> None:
        options = self.options
        address = self.declaration(queue).address
        if address is not None:
            options.addresses[queue] = address  # the topic verbatim, from now on
        topics = [
            NewTopic(options.topic(queue), options.partitions, options.replication),
            NewTopic(options.delay_topic(queue), 1, options.replication),
            NewTopic(options.dead_topic(queue), 1, options.replication),
        ]
        try:
            response = await self.link.admin.create_topics(topics)
        except Exception as exc:
            raise TransportError(
                f"{self.what}: cannot create the topics of {queue!r}: {exc}"
            ) from None
        # (topic, error_code[, error_message]) per topic: the protocol's CreateTopicsResponse,
        # which aiokafka returns as it is (tests/canary/test_kafka_internals.py)
        for error in getattr(response, "topic_errors", ()):
            topic, code = error[0], error[1]
            if code not in (0, TOPIC_EXISTS):
                message = error[2] if len(error) > 2 else ""
                raise TransportError(
                    f"{self.what}: cannot create topic {topic!r}: error {code} {message or ''}"
                )

    async def partitions(self, topic: str) -> list[Any]:
        numbers = await self.link.producer.partitions_for(topic)
        if not numbers:
            raise TransportError(f"{self.what}: topic {topic!r} has no partitions")
        return [TopicPartition(topic, number) for number in sorted(numbers)]

    async def lag(self, topic: str, group: str) -> int:
        """Records of ``topic`` that ``group`` has not committed yet."""
        partitions = await self.partitions(topic)
        starts, ends = await self.bounds(partitions)
        committed = await self.link.admin.list_consumer_group_offsets(group, partitions=partitions)
        lag = 0
        for tp in partitions:
            start = starts.get(tp, 0)
            done = committed.get(tp)
            position = done.offset if done is not None and done.offset >= 0 else start
            lag += max(0, ends.get(tp, 0) - max(start, position))
        return lag

    async def members(self, group: str) -> int:
        """Members of consumer group ``group`` now (0 when it has none or does not exist).
        One group per request: Tansu (0.6) answers a DescribeGroups of several groups with
        a response aiokafka cannot decode."""
        (answer,) = await self.link.admin.describe_consumer_groups([group])
        found = [g for g in answer.to_object()["groups"] if g["group"] == group]
        return len(found[0]["members"]) if found else 0

    async def bounds(self, partitions: list[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
        """The first and the next offset of each partition.

        The end is read from a fetch of the last record, not only from ListOffsets: Tansu
        (0.6) answers ListOffsets with the offset after the *first* record of the newest
        batch, which undercounts when a batch held several records. A fetch at that
        offset returns the whole batch and the true high watermark (the same answer as
        ListOffsets on Apache Kafka, at the cost of one fetch).
        """
        async with self._inspecting:
            if self._inspector is None:
                inspector = AIOKafkaConsumer(**self.options.common(), enable_auto_commit=False)
                await inspector.start()
                self._inspector = inspector
            inspector = self._inspector
            starts = await inspector.beginning_offsets(partitions)
            ends = dict(await inspector.end_offsets(partitions))
            unsure = [tp for tp in partitions if ends.get(tp, 0) > starts.get(tp, 0)]
            if not unsure:
                return starts, ends
            inspector.assign(unsure)
            for tp in unsure:
                inspector.seek(tp, ends[tp] - 1)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.options.request_timeout
            while unsure and loop.time() < deadline:
                batch = await inspector.getmany(*unsure, timeout_ms=500)
                for tp, records in batch.items():
                    if records:
                        high = inspector.highwater(tp) or 0
                        ends[tp] = max(ends[tp], high, records[-1].offset + 1)
                        unsure.remove(tp)
            inspector.assign([])
            return starts, ends

    async def close(self) -> None:
        self.created.clear()
        self.ready.clear()
        inspector, self._inspector = self._inspector, None
        if inspector is not None:
            await stop(inspector, self.what)

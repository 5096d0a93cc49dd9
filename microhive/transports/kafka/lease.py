"""Leases on Kafka: a consumer group on a one-partition topic; the holder owns partition 0.

Each replica joins group ``<prefix>.lease.<name>`` on topic ``<prefix>.lease.<name>`` (one
partition). The group coordinator gives the partition to one member; when that member stops
heartbeating — its process died, its host or network is gone — the coordinator drops it
after ``session_timeout`` (the lease's ``ttl``) and gives the partition to another. A sticky
assignor keeps the partition where it is when members come and go, so starting one more
replica does not move the lease.

The last tick run is the group's committed offset of partition 0: the holder commits the
tick before running it, and a new holder reads it when the partition is assigned. Kafka
accepts a commit only from a member of the current generation of the group, so a holder
that was dropped (it has not noticed yet) cannot claim a tick any more.

Why not another design: Kafka has no key-value store or compare-and-set; a compacted topic
with a "last tick" record has no atomic check before writing. The group protocol is Kafka's
own answer to "one member owns this", and its offsets are fenced by generation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.cluster import ClusterMetadata
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from ...errors import TransportError
from ...leases import Lease
from .options import KafkaOptions

HOLDING = b"holding"


class StickyHolder(AbstractPartitionAssignor):  # type: ignore[misc]
    """Partition 0 stays with the member that says it holds it, else goes to the first."""

    name = "microhive-lease"
    version = 0

    def __init__(self) -> None:
        self.holding = False

    def assign(
        self, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        ordered = sorted(members)
        holders = [m for m in ordered if members[m].user_data == HOLDING]
        chosen = (holders or ordered)[0]
        result: dict[str, ConsumerProtocolMemberAssignment] = {}
        for member, metadata in members.items():
            topics = [(t, [0]) for t in metadata.subscription] if member == chosen else []
            result[member] = ConsumerProtocolMemberAssignment(self.version, topics, b"")
        return result

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(
            self.version, list(topics), HOLDING if self.holding else b""
        )

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        self.holding = any(partitions for _, partitions in assignment.assignment)


class _Assignments(ConsumerRebalanceListener):  # type: ignore[misc]
    """Counts assignments, so the holder reads the last tick again after each one."""

    def __init__(self) -> None:
        self.assignments = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assignments += 1


class KafkaLease(Lease):
    def __init__(self, options: KafkaOptions, name: str, holder: str, ttl: float) -> None:
        super().__init__(name, holder, ttl)
        self.options = options
        self.topic = f"{options.prefix}.lease.{name}"
        self.partition = TopicPartition(self.topic, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._starting: asyncio.Task[AIOKafkaConsumer] | None = None
        self._assignor = StickyHolder()
        self._listener = _Assignments()
        self._seen = 0  # assignments counted when the last tick was read
        self._held = False
        self._last: int | None = None  # the last tick run, read when the partition came

    async def _open(self) -> AIOKafkaConsumer:
        await self._create_topic()
        ms = round(self.ttl * 1000)
        consumer = AIOKafkaConsumer(
            **{**self.options.common(), "client_id": f"{self.options.client_id}-lease"},
            group_id=self.topic,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            session_timeout_ms=ms,
            heartbeat_interval_ms=max(10, ms // 5),
            rebalance_timeout_ms=ms,
            max_poll_interval_ms=max(ms * 10, 60_000),
            partition_assignment_strategy=(self._assignor,),
        )
        consumer.subscribe([self.topic], listener=self._listener)
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        return consumer

    async def _create_topic(self) -> None:
        admin = AIOKafkaAdminClient(**self.options.common())
        await admin.start()
        try:
            topic = NewTopic(self.topic, 1, self.options.replication)
            response = await admin.create_topics([topic])
        finally:
            await admin.close()
        for error in getattr(response, "topic_errors", ()):
            if error[1] not in (0, TopicAlreadyExistsError.errno):
                raise TransportError(f"cannot create lease topic {self.topic!r}: error {error[1]}")

    async def _check(self) -> bool:
        # joining takes seconds and must outlive an impatient caller's timeout, else every
        # attempt would leave a half-joined member behind: it runs as a task of its own
        starting = self._starting
        if starting is None or (starting.done() and starting.exception() is not None):
            starting = self._starting = asyncio.get_running_loop().create_task(self._open())
        if not starting.done():
            await asyncio.wait({starting}, timeout=self.ttl / 4)
            if not starting.done():
                return False  # still joining: not held yet
        consumer = starting.result()
        await consumer.getmany(timeout_ms=0)  # keeps the member polling (max_poll_interval)
        held = self.partition in consumer.assignment()
        if self._held and not held:  # a replica joining makes the group rebalance: the
            # sticky assignor gives the partition back within moments, so wait a little
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.ttl / 4
            while not held and loop.time() < deadline:
                await asyncio.sleep(0.05)
                held = self.partition in consumer.assignment()
        assignments = self._listener.assignments
        if held and (not self._held or assignments != self._seen):
            # (re)assigned: what did the holders in between run?
            consumer.pause(self.partition)  # never fetch from it: only the offset matters
            self._last = await consumer.committed(self.partition)
        self._seen = assignments
        self._held = held
        return held

    async def acquire(self) -> bool:
        return await self._check()

    async def renew(self) -> bool:
        if self._starting is None:
            return False
        return await self._check()

    async def release(self) -> None:
        await self.close()  # leaving the group hands the partition on at once

    async def claim(self, tick: int) -> bool:
        consumer = self._consumer
        if consumer is None or not self._held or self.partition not in consumer.assignment():
            return False
        if self._last is not None and tick <= self._last:
            return False
        # refused (CommitFailedError) when the group moved on without this member
        await consumer.commit({self.partition: OffsetAndMetadata(tick, "")})
        self._last = tick
        return True

    async def close(self) -> None:
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
        consumer, self._consumer = self._consumer, None
        self._held = False
        self._assignor.holding = False
        if consumer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.ttl + 5):
                    await consumer.stop()


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    return KafkaLease(transport.options, name, holder, ttl)

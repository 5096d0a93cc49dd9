"""Which offsets of a partition may be committed: never past one that is not processed.

Kafka remembers one position per partition and group, so "acknowledge message 7" does not
exist: committing 8 says everything before it is done. A consumer with several handlers
finishes messages out of order, so it keeps, per partition, the offsets it handed out and
whether each is done, and commits only up to the first that is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener

from ..links import RECONNECT

log = logging.getLogger("microhive.kafka")


class Offsets:
    """One partition as a consumer holds it: offsets handed out (done or not), offsets given
    back (to be read again), and how far it has read and committed."""

    __slots__ = ("committed", "live", "pending", "read", "released", "tp")

    def __init__(self, tp: Any) -> None:
        self.tp = tp
        self.pending: dict[int, bool] = {}  # offset -> done
        self.released: set[int] = set()  # given back unprocessed: commits stop before them
        self.read = -1  # the offset after the last record read (-1: nothing read yet)
        self.committed = -1  # the last offset committed
        self.live = True  # False once the partition was revoked: nothing more is committed

    def take(self, offset: int) -> bool:
        """A record was read: True if it is to be handed out (not already held or done)."""
        if offset in self.pending:
            return False  # read again after a seek back: it is in a handler or done
        self.released.discard(offset)
        self.pending[offset] = False
        if offset >= self.read:
            self.read = offset + 1
        return True

    def skip(self, offset: int) -> None:
        """A record that is not for this consumer (another group's retry): passed over."""
        if offset >= self.read:
            self.read = offset + 1

    def done(self, offset: int) -> None:
        if offset in self.pending:
            self.pending[offset] = True

    def release(self, offset: int) -> None:
        self.pending.pop(offset, None)
        self.released.add(offset)

    def target(self) -> int | None:
        """The offset to commit (the first not processed, or what was read), or None when
        there is nothing new. Done offsets below it are forgotten."""
        if self.read < 0:
            return None
        low = self.read
        for offset, done in self.pending.items():
            if not done and offset < low:
                low = offset
        if self.released:
            low = min(low, *self.released)
        passed = [offset for offset in self.pending if offset < low]
        for offset in passed:
            del self.pending[offset]
        return low if low > self.committed else None

    def busy(self) -> bool:
        """Some handed-out offset is neither done nor given back."""
        return not all(self.pending.values())


async def commit(client: Any, partitions: Iterable[Offsets], what: str) -> bool:
    """Commit the targets of ``partitions`` with the aiokafka consumer ``client``.

    A failed commit (a rebalance took the partitions, the cluster is unreachable) is logged
    and not retried here: the next commit carries the same or later offsets, and at worst
    the new owner of a partition processes its uncommitted messages again.
    """
    targets = {}
    for offsets in partitions:
        if offsets.live:
            target = offsets.target()
            if target is not None:
                targets[offsets] = target
    if not targets:
        return True
    try:
        await client.commit({offsets.tp: target for offsets, target in targets.items()})
    except Exception as exc:
        log.warning("%s: commit failed (will be done again later): %s", what, exc)
        return False
    for offsets, target in targets.items():
        offsets.committed = max(offsets.committed, target)
    return True


async def stop(client: Any, what: str) -> None:
    """Stop an aiokafka client, logging what fails. aiokafka (0.14) raises CancelledError
    from ``stop()`` of a consumer stopped right after it started (an internal task that
    never ran); that one is swallowed unless this task itself is being cancelled."""
    try:
        await client.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.warning("%s: stopping the client failed: %s", what, exc)


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Passes aiokafka's rebalance callbacks on to a consumer or a mover."""

    def __init__(
        self,
        revoked: Callable[[Any], Awaitable[None]],
        assigned: Callable[[Any], None],
    ) -> None:
        self.revoked = revoked
        self.assigned = assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.assigned(assigned)


async def pause_after_failure(failures: int, what: str, exc: Exception) -> None:
    """A loop that must never end failed: say so once, then back off as every engine's
    link does (:data:`RECONNECT`; aiokafka reconnects underneath)."""
    if failures == 1:
        log.warning("%s: %s; trying again", what, exc)
    await asyncio.sleep(RECONNECT.delay(failures))

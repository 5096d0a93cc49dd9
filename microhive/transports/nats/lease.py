"""Leases on NATS: JetStream key-value buckets, compare-and-set on the key's revision.

The lease is key ``<name>`` of bucket ``<prefix>_leases_<ttl in ms>``, whose ``max_age`` is
the lease's TTL: the server removes a value ``ttl`` after it was last written, so a holder
that stops renewing loses its lease (nats-server 2.9 has no per-key TTL; one bucket per TTL
does the same). Acquire is ``create`` (only if absent), renew and release are an ``update``
and a ``delete`` that name the revision the holder wrote last, so a holder whose value
expired and was replaced cannot touch its successor's.

The last tick run is key ``<name>`` of bucket ``<prefix>_ticks`` (kept a day): a claim
checks that this holder still holds the lease, reads the last tick and writes the new one
only if nobody wrote since that read (``update`` with the revision read), so two claims of
one tick can never both succeed.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from ...leases import TICK_RETENTION, Lease
from .link import Link
from .options import NatsOptions


def _bucket(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def _key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_=/.-]", "_", text)


class NatsLease(Lease):
    def __init__(self, options: NatsOptions, name: str, holder: str, ttl: float) -> None:
        super().__init__(name, holder, ttl)
        self.options = options
        self.key = _key(name)
        self.lease_bucket = _bucket(f"{options.prefix}_leases_{round(ttl * 1000)}")
        self.tick_bucket = _bucket(f"{options.prefix}_ticks")
        self._link: Link | None = None
        self._leases: Any = None
        self._ticks: Any = None
        self._revision: int | None = None  # of the value this holder wrote last

    async def _buckets(self) -> tuple[Any, Any]:
        if self._leases is None or self._ticks is None:
            link = self._link
            if link is None or link.closed:
                link = Link(self.options, "lease")
                try:
                    await link.open()
                except BaseException:
                    await link.close()
                    raise
                self._link = link
            js = link.client.jetstream()
            self._leases = await js.create_key_value(
                bucket=self.lease_bucket, ttl=self.ttl, history=1
            )
            self._ticks = await js.create_key_value(
                bucket=self.tick_bucket, ttl=TICK_RETENTION, history=1
            )
        return self._leases, self._ticks

    async def _current(self, kv: Any, key: str) -> Any:
        try:
            return await kv.get(key)
        except KeyNotFoundError:  # also a deleted or purged key
            return None

    async def acquire(self) -> bool:
        leases, _ = await self._buckets()
        for _ in range(2):
            try:
                self._revision = await leases.create(self.key, self.holder.encode())
                return True
            except KeyWrongLastSequenceError:
                break
            except KeyNotFoundError:
                # the holder's entry expired between nats-py's create and the look it takes
                # after a refusal (which then raises this): the lease is free, try again
                continue
        entry = await self._current(leases, self.key)
        if entry is None or entry.value != self.holder.encode():
            return False
        return await self.renew_from(entry.revision)

    async def renew_from(self, revision: int) -> bool:
        leases, _ = await self._buckets()
        try:
            self._revision = await leases.update(self.key, self.holder.encode(), last=revision)
        except KeyWrongLastSequenceError:
            self._revision = None
            return False
        return True

    async def renew(self) -> bool:
        if self._revision is None:
            return False
        return await self.renew_from(self._revision)

    async def release(self) -> None:
        leases, _ = await self._buckets()
        revision, self._revision = self._revision, None
        if revision is not None:
            # expired and taken meanwhile: not ours to delete
            with contextlib.suppress(KeyWrongLastSequenceError):
                await leases.delete(self.key, last=revision)

    async def claim(self, tick: int) -> bool:
        leases, ticks = await self._buckets()
        entry = await self._current(leases, self.key)
        if entry is None or entry.value != self.holder.encode():
            return False
        last = await self._current(ticks, self.key)
        try:
            if last is None:
                await ticks.create(self.key, str(tick).encode())
            elif int(last.value) >= tick:
                return False
            else:
                await ticks.update(self.key, str(tick).encode(), last=last.revision)
        except KeyWrongLastSequenceError:
            return False  # another claim got there first
        return True

    async def close(self) -> None:
        link, self._link = self._link, None
        self._leases = self._ticks = None
        if link is not None:
            await link.close()


def open_lease(transport: Any, name: str, holder: str, ttl: float) -> Lease:
    return NatsLease(transport.options, name, holder, ttl)

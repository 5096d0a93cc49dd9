"""The NATS lease when the holder's entry expires at the worst moment."""

from __future__ import annotations

from typing import Any

from nats.js.errors import NotFoundError

from microhive import QueueBroker
from microhive.leases import open_lease
from microhive.testing import eventually
from microhive.transports.nats.lease import NatsLease


async def test_a_lease_that_expires_while_another_asks_for_it_is_taken(nats_url: str) -> None:
    """nats-py's ``KeyValue.create``, refused because the holder's entry exists, looks the
    key up, and raises ``KeyNotFoundError`` when the entry expired in between (it failed a
    CI run that way). The lease is free then, and the asker takes it. The expiry is made
    to happen at that moment: the asker's look waits until the server dropped the entry."""
    broker = QueueBroker.from_url(nats_url)
    a = open_lease(broker, "Agent.job", "a", 1.0)
    b = open_lease(broker, "Agent.job", "b", 1.0)
    assert isinstance(a, NatsLease) and isinstance(b, NatsLease)
    try:
        assert await a.acquire()
        leases, _ = await b._buckets()
        assert b._link is not None
        jetstream = b._link.client.jetstream()
        look = leases._get

        async def gone() -> bool:
            try:
                await jetstream.get_msg(
                    f"KV_{b.lease_bucket}", subject=f"$KV.{b.lease_bucket}.{b.key}"
                )
            except NotFoundError:
                return True
            return False

        async def expired_meanwhile(key: str, revision: Any = None) -> Any:
            leases._get = look
            await eventually(gone, 30)  # the holder's entry reached its TTL
            return await look(key, revision)

        leases._get = expired_meanwhile
        assert await b.acquire(), "the lease was free: b takes it"
        assert leases._get is look, "the moment was reached"
        assert not await a.renew()
    finally:
        await a.close()
        await b.close()

"""Declaring single-runner schedules: what is refused, and what the default is."""

from __future__ import annotations

import pytest

from microhive import MicroAgent, QueueBroker, cron, periodic
from microhive.agent.decorators import specs_of
from microhive.errors import ConfigurationError
from microhive.leases import DEFAULT_LEASE_TTL


def test_schedules_run_per_replica_by_default() -> None:
    async def job() -> None:
        pass

    assert not specs_of(periodic(1)(job))[0].single  # type: ignore[union-attr]
    assert not specs_of(cron("* * * * *")(job))[0].single  # type: ignore[union-attr]


def test_single_cron_keeps_its_expression_and_zone() -> None:
    async def job() -> None:
        pass

    spec = specs_of(cron("0 */4 * * *", tz="Europe/Berlin", single=True, lease_ttl=3)(job))[0]
    assert (spec.expression, str(spec.tz), spec.single, spec.lease_ttl) == (  # type: ignore[union-attr]
        "0 */4 * * *",
        "Europe/Berlin",
        True,
        3.0,
    )
    assert DEFAULT_LEASE_TTL == 10.0


def test_single_needs_a_bus_or_broker() -> None:
    class Alone(MicroAgent):
        @periodic(1, single=True)
        async def job(self) -> None:
            pass

    with pytest.raises(ConfigurationError, match="single=True schedules"):
        Alone()


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "10", True, None])
def test_a_bad_lease_ttl_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        periodic(1, single=True, lease_ttl=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lease_ttl"):
        cron("@daily", single=True, lease_ttl=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_single_must_be_a_bool(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="single"):
        periodic(1, single=bad)  # type: ignore[arg-type]


def test_a_transport_without_leases_is_refused_clearly() -> None:
    from microhive.leases import open_lease

    with pytest.raises(ConfigurationError, match="offers no leases"):
        open_lease(object(), "Agent.job", "a", 1.0)


async def test_a_single_cron_job_starts_and_stops() -> None:
    class Nightly(MicroAgent):
        @cron("@daily", single=True)
        async def job(self) -> None:
            pass

    async with QueueBroker.from_url("memory://nightly") as broker, Nightly(broker=broker):
        pass

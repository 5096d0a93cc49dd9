"""Seed 004's satellites: plausible positions, one a second, keyed by satellite — on
``memory://`` in one process and on Kafka with a process per satellite."""

from __future__ import annotations

import datetime
import functools
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.telemetry.readings import SATELLITES, Reading, known, position, telemetry
from examples.telemetry.satellite import Satellite
from microhive import ConfigurationError, QueueBroker
from microhive.envelope import new_id
from microhive.testing import eventually
from microhive.web import WebHive

from .telemetry_support import (  # noqa: F401 - fixtures
    ALTITUDES,
    WAIT,
    check_readings,
    kafka_fixture,
    queue_fixture,
    satellite,
    stop_all,
)

COMPOSE = Path(__file__).resolve().parents[2] / "examples" / "telemetry" / "docker-compose.yml"


def test_the_shipped_tles_are_the_three_satellites() -> None:
    assert known() == list(SATELLITES) == list(ALTITUDES)
    with pytest.raises(ConfigurationError, match="known: TERRA, AQUA, NOAA 20"):
        position("ISS")


@settings(max_examples=50, deadline=None)
@given(
    name=st.sampled_from(SATELLITES),
    when=st.datetimes(
        min_value=datetime.datetime(2026, 9, 1),
        max_value=datetime.datetime(2027, 3, 1),
        timezones=st.just(datetime.UTC),
    ),
)
def test_positions_are_plausible_for_months_around_the_tle_epoch(
    name: str, when: datetime.datetime
) -> None:
    reading = position(name, when)
    low, high = ALTITUDES[name]
    assert -90 <= reading.lat <= 90 and -180 <= reading.lon <= 180
    assert low <= reading.alt <= high
    assert reading.time == when


async def test_three_satellites_in_one_process_on_memory(queue: str) -> None:
    producers = [
        functools.partial(Satellite, name=name, settings={"name": name, "queue": queue})
        for name in SATELLITES
    ]
    async with WebHive(*producers, transport=f"memory://{new_id()[:8]}") as hive:
        tails = {name: hive.tail(telemetry(queue), last=180, key=name) for name in SATELLITES}
        await eventually(lambda: all(len(tail) >= 6 for tail in tails.values()), WAIT)
        for name, tail in tails.items():
            check_readings(name, tail.payloads())
            assert {e.headers["x-key"] for e in tail.envelopes()} == {name}


async def test_a_process_per_satellite_on_kafka(kafka: str, queue: str) -> None:
    processes = [satellite(name, kafka, queue) for name in SATELLITES]
    broker = QueueBroker.from_url(kafka)
    try:
        for process in processes:
            process.wait_for_line(r"reading 1,", WAIT)
        for name in SATELLITES:
            readings: list[Reading] = []
            async for envelope in broker.tail(telemetry(queue), last=0, key=name):
                assert envelope.headers["x-key"] == name
                readings.append(envelope.payload)
                if len(readings) == 5:
                    break
            check_readings(name, readings)
        # the seed's dashboard starts from the last readings of one satellite: a keyed tail
        terra = broker.tail(telemetry(queue), last=3, key="TERRA")
        history = [await anext(terra) for _ in range(3)]  # closing the broker ends the tails
        assert [e.payload.satellite for e in history] == ["TERRA"] * 3
        os.kill(processes[0].popen.pid, signal.SIGTERM)
        assert processes[0].wait(WAIT) == 0  # a satellite stops cleanly on SIGTERM
    finally:
        await broker.close()
        stop_all(*processes)


def compose_command() -> list[str]:
    """``docker compose`` (v2) or ``docker-compose`` (v1), whichever validates here."""
    docker = shutil.which("docker")
    if docker and _run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)


def test_the_compose_file_is_valid() -> None:
    """The Compose file the seed asks for (its syntax: no Docker engine runs the tests)."""
    compose = [*compose_command(), "-f", str(COMPOSE)]
    checked = _run(*compose, "config", "-q")
    assert checked.returncode == 0, checked.stderr
    services = _run(*compose, "config", "--services")
    assert set(services.stdout.split()) == {"kafka", "terra", "aqua", "noaa20", "dashboard"}

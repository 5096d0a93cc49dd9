"""What the telemetry example's tests share: its processes, and what a reading must be."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import AsyncIterator
from typing import Any

import pytest

from examples.telemetry.readings import Reading
from microhive.envelope import new_id

from .. import engines
from ..cli.helpers import Process

WAIT = 60.0
"""A failure guard only: processes import numpy, pyorbital and Dash on a busy machine."""

ALTITUDES = {"TERRA": (650.0, 750.0), "AQUA": (650.0, 750.0), "NOAA 20": (780.0, 880.0)}
"""Where each satellite flies (km): their orbits are near-circular at these heights."""


def satellite(name: str, broker: str, queue: str) -> Process:
    """One satellite's producer as a process of its own (the seed's backend service)."""
    return Process(
        "-m", "examples.telemetry.satellite", "--name", name, "--broker", broker, "--queue", queue
    )


def dashboard(queue: str, *options: str) -> Process:
    """The dashboard process on a free port (``--port 0``); see :func:`address`."""
    return Process("-m", "examples.telemetry", "--port", "0", "--queue", queue, *options)


def address(process: Process) -> str:
    line = process.wait_for_line(r"dashboard on http://", WAIT)
    return line.split("dashboard on ", 1)[1].strip()


def check_readings(name: str, readings: list[Reading]) -> None:
    """Plausible positions of ``name``, about one a second, in order."""
    low, high = ALTITUDES[name]
    for reading in readings:
        assert reading.satellite == name
        assert -90 <= reading.lat <= 90 and -180 <= reading.lon <= 180, reading
        assert low <= reading.alt <= high, reading
    gaps = [(b.time - a.time).total_seconds() for a, b in itertools.pairwise(readings)]
    assert all(gap > 0 for gap in gaps), gaps
    assert 0.8 <= statistics.median(gaps) <= 1.2, gaps  # the schedule's period, not a deadline


@pytest.fixture(name="queue")
def queue_fixture() -> str:
    """A queue name of the test's own."""
    return f"telemetry_{new_id()[:10]}"


@pytest.fixture(name="kafka")
async def kafka_fixture() -> AsyncIterator[str]:
    """The shared Kafka-protocol broker with a topic prefix of the test's own."""
    base = engines.require_kafka()
    prefix = f"mhtel_{new_id()[:10]}"
    url = engines.with_query(base, prefix=prefix, **engines.KAFKA_TEST_OPTIONS)
    yield url
    await engines.delete_kafka_prefix(url, prefix)


def stop_all(*processes: Any) -> None:
    for process in processes:
        process.kill()

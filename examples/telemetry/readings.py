"""What a satellite sends: its position at one moment, computed with pyorbital from the TLE
lines shipped with the example (no download, no internet)."""

from __future__ import annotations

import datetime
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from microhive import ConfigurationError, Queue

TLE_FILE = Path(__file__).resolve().parent / "satellites.tle"
SATELLITES = ("TERRA", "AQUA", "NOAA 20")
QUEUE = "telemetry"


class Reading(BaseModel):
    """One position report, as the seed's producer sends it (plus whose it is)."""

    satellite: str
    time: datetime.datetime
    lon: float
    lat: float
    alt: float  # km above the ellipsoid


def telemetry(name: str = QUEUE) -> Queue:
    """The queue of readings (keyed by satellite): one for every satellite."""
    return Queue(name, schema=Reading)


def known() -> list[str]:
    """The satellites the TLE file has: every line that is not an element line."""
    lines = TLE_FILE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and line[:2] not in ("1 ", "2 ")]


@cache
def orbit(name: str) -> object:
    """pyorbital's model of ``name``'s orbit, from the shipped TLE file."""
    from pyorbital.orbital import Orbital

    if name not in known():
        raise ConfigurationError(
            f"no TLE for satellite {name!r} in {TLE_FILE.name} (known: {', '.join(known())})"
        )
    return Orbital(name, tle_file=str(TLE_FILE))


def position(name: str, when: datetime.datetime | None = None) -> Reading:
    """Where ``name`` is at ``when`` (default: now)."""
    when = when or datetime.datetime.now(datetime.UTC)
    naive = when.astimezone(datetime.UTC).replace(tzinfo=None)  # pyorbital works in naive UTC
    lon, lat, alt = orbit(name).get_lonlatalt(naive)  # type: ignore[attr-defined]
    return Reading(satellite=name, time=when, lon=float(lon), lat=float(lat), alt=float(alt))

"""The producers: one agent per satellite, one reading a second, keyed by satellite.

``python -m examples.telemetry.satellite --name TERRA --broker kafka://127.0.0.1:9092`` runs one
satellite as a process of its own (the seed's ``backend_terra`` service); so does
``microhive run examples.telemetry.satellite:Terra --broker kafka://127.0.0.1:9092``.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from microhive import MicroAgent, on, periodic
from microhive.runner import run_agents
from microhive.settings import load_settings

from .readings import QUEUE, SATELLITES, known, orbit, position, telemetry


class Satellite(MicroAgent):
    """Sends where its satellite is, every second, to the telemetry queue (key: its name).

    Settings (``microhive run`` config, or the constructor's ``settings=``): ``name`` (a
    satellite of ``satellites.tle``), ``queue`` (default ``telemetry``)."""

    satellite = "TERRA"

    @on("pre_start")
    async def load_orbit(self) -> None:
        self.satellite = str(self.settings.get("name", type(self).satellite))
        self.queue = telemetry(str(self.settings.get("queue", QUEUE)))
        orbit(self.satellite)  # an unknown name stops the start with the names it knows
        self.sent = 0

    @periodic(period=1, timeout=5)
    async def report(self) -> None:
        reading = position(self.satellite)
        await self.broker.queue(self.queue).send(reading, key=self.satellite)
        if self.sent % 60 == 0:
            self.log.info(
                "%s: reading %d, lat %.2f lon %.2f alt %.1f km",
                self.satellite, self.sent + 1, reading.lat, reading.lon, reading.alt,
            )  # fmt: skip
        self.sent += 1


class Terra(Satellite):
    satellite = "TERRA"


class Aqua(Satellite):
    satellite = "AQUA"


class Noaa20(Satellite):
    satellite = "NOAA 20"


@click.command()
@click.option("--name", "satellite", default="TERRA", show_default=True, help="Which satellite.")
@click.option("--broker", default="memory://", show_default=True, help="Queue broker URL.")
@click.option("--bus", default=None, help="Signal bus URL (default memory://: not used).")
@click.option("--queue", default=QUEUE, show_default=True, help="Queue of the readings.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def main(satellite: str, broker: str, bus: str | None, queue: str, duration: float | None) -> None:
    """Run one satellite's producer until Ctrl-C or SIGTERM."""
    if satellite not in known():
        raise click.BadParameter(
            f"{satellite!r}: known are {', '.join(known())}", param_hint="--name"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings(
        broker=broker,
        bus=bus,
        duration=duration,
        grace_period=2,
        agents={"Satellite": {"name": satellite, "queue": queue}},
    )
    asyncio.run(run_agents([Satellite], settings))


__all__ = ["SATELLITES", "Aqua", "Noaa20", "Satellite", "Terra", "main"]

if __name__ == "__main__":
    main(sys.argv[1:], prog_name="python -m examples.telemetry.satellite")

"""The seed's exercise (shared/seeds/003): the current weather, refreshed every 20 minutes by
a periodic job and written to a file — here on a single-runner schedule, so that with any
number of replicas each refresh happens once, and through a task, so the report is a kept
result other programs can read.

``WEATHER_PERIOD=2 python -m examples.tasks.weather`` runs two replicas in one process on
``memory://`` with a 2-second period (``--replicas``, ``--file``, ``--duration``); on a real engine
run real replicas: ``WEATHER_PERIOD=5 microhive run examples.tasks.weather:Weather
--transport redis://127.0.0.1:6379/0 --processes 2``. The weather comes from a small built-in
source (no network), the same in every replica for the same time.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import zlib
from pathlib import Path

import click

from microhive import MicroAgent, Queue, QueueBroker, SignalBus, periodic, task

PERIOD = float(os.environ.get("WEATHER_PERIOD", "1200"))
"""Seconds between refreshes: the seed's 20 minutes unless the environment says otherwise
(a decorator's period is fixed when the class is defined)."""

report = Queue("weather_report", providing_args=["city", "tick"])


def observe(city: str, at: float) -> dict[str, float | str]:
    """A plausible, repeatable reading for ``city`` at ``at`` (a day's cycle plus noise)."""
    hour = (at / 3600) % 24
    noise = zlib.crc32(f"{city}:{int(at // 60)}".encode()) % 1000 / 1000
    temperature = 4 + 6 * math.sin((hour - 9) / 24 * 2 * math.pi) + 2 * (noise - 0.5)
    sky = ("clear", "cloudy", "rain", "snow" if temperature < 1 else "showers")[int(noise * 4)]
    return {"city": city, "temperature": round(temperature, 1), "sky": sky}


def write(path: Path, report: str, history: str) -> None:
    """The current report in ``path``, and one line more in ``path.history``."""
    path.write_text(report + "\n")
    with path.with_name(path.name + ".history").open("a") as lines:
        lines.write(history + "\n")


class Weather(MicroAgent):
    """Refreshes the report each tick (one replica runs it) through the ``weather_report`` task.

    Settings: ``city`` (default Moscow), ``file`` (default ``WEATHER_FILE`` or weather.txt).
    """

    @periodic(PERIOD, single=True, lease_ttl=max(2.0, min(PERIOD * 2, 10.0)))
    async def refresh(self) -> None:
        tick = int(time.time() // PERIOD)
        city = str(self.settings.get("city", "Moscow"))
        job = await self.broker.weather_report.submit(city=city, tick=tick)
        line = await job.result(timeout=max(PERIOD, 10))
        path = Path(self.settings.get("file", os.environ.get("WEATHER_FILE", "weather.txt")))
        await asyncio.to_thread(write, path, line, f"{line} by {self.instance_id}")

    @task(report, retries=2, timeout=30)
    async def weather_report(self, city: str, tick: int) -> str:
        reading = observe(city, tick * PERIOD)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(tick * PERIOD))
        return f"tick {tick} {stamp} UTC {city}: {reading['temperature']} °C, {reading['sky']}"


async def replicas(url: str, count: int, settings: dict[str, str], duration: float) -> None:
    bus, broker = SignalBus.from_url(url), QueueBroker.from_url(url)
    agents = [Weather(bus, broker, settings=settings) for _ in range(count)]
    for agent in agents:
        await agent.start()
    try:
        await asyncio.sleep(duration)
    finally:
        for agent in agents:
            await agent.stop()
        await broker.close()
        await bus.close()


@click.command()
@click.option("--url", default="memory://", show_default=True)
@click.option("--replicas", "count", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--file", "path", default="weather.txt", show_default=True)
@click.option("--city", default="Moscow", show_default=True)
@click.option("--duration", default=10.0, show_default=True, type=float)
def main(url: str, count: int, path: str, city: str, duration: float) -> None:
    """Run REPLICAS replicas of the weather agent in this process for DURATION seconds."""
    asyncio.run(replicas(url, count, {"file": path, "city": city}, duration))
    click.echo(Path(path).read_text().strip() if Path(path).exists() else "no report yet")
    click.echo(f"history: {path}.history")


if __name__ == "__main__":
    main()

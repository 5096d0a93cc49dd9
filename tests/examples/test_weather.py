"""The seed's Celery exercise (examples/tasks/weather.py): the weather refreshed on a
single-runner schedule through a task. With several replicas every tick is written once, by
one of them, in order — in one process on ``memory://`` and as real processes on Redis."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from microhive.envelope import new_id
from microhive.testing import eventually

from ..cli.helpers import Process
from ..engines import REDIS_URL, delete_prefix, require_redis, with_query

LINE = re.compile(r"^tick (?P<tick>\d+) \S+ \S+ UTC Moscow: -?\d+\.\d °C, \w+ by (?P<by>\S+)$")


def ticks(history: Path) -> list[tuple[int, str]]:
    if not history.exists():
        return []
    found = []
    for line in history.read_text().splitlines():
        match = LINE.match(line)
        assert match is not None, f"unexpected line: {line!r}"
        found.append((int(match["tick"]), match["by"]))
    return found


def check(history: Path) -> None:
    written = [tick for tick, _ in ticks(history)]
    assert len(written) == len(set(written)), f"a tick was written twice: {written}"
    assert written == sorted(written)


async def test_three_replicas_in_one_process_write_each_tick_once(tmp_path: Path) -> None:
    report = tmp_path / "weather.txt"
    process = Process(
        "-m", "examples.tasks.weather", "--replicas", "3", "--duration", "6",
        "--file", str(report),
        env={"WEATHER_PERIOD": "0.5"},
    )  # fmt: skip
    assert process.wait(60) == 0, process.output
    history = tmp_path / "weather.txt.history"
    check(history)
    assert len(ticks(history)) >= 3
    assert report.read_text().startswith(f"tick {ticks(history)[-1][0]} ")


async def test_two_processes_on_redis_write_each_tick_once(tmp_path: Path) -> None:
    require_redis()
    prefix = f"weather{new_id()[:8]}:"
    url = with_query(REDIS_URL, prefix=prefix)
    environment = {"WEATHER_PERIOD": "0.5", "WEATHER_FILE": str(tmp_path / "weather.txt")}
    command = ["-m", "microhive", "run", "examples.tasks.weather:Weather", "--transport", url]
    processes = [Process(*command, "--grace-period", "1", env=environment) for _ in range(2)]
    history = tmp_path / "weather.txt.history"
    try:
        await eventually(lambda: len(ticks(history)) >= 8, timeout=60, interval=0.2)
    finally:
        for process in processes:
            process.popen.send_signal(signal.SIGTERM)
        codes = [process.wait(30) for process in processes]
        await delete_prefix(REDIS_URL, prefix)
    check(history)
    assert codes == [0, 0], [process.output for process in processes]


@pytest.mark.parametrize("at", [0.0, 1_796_426_832.0, 2_000_000_000.5])
def test_the_built_in_source_is_plausible_and_repeatable(at: float) -> None:
    from examples.tasks.weather import observe

    reading = observe("Moscow", at)
    assert reading == observe("Moscow", at)
    assert -10 <= float(reading["temperature"]) <= 20

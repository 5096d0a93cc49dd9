"""Schedules: cron next-fire times, and the periodic and cron loops (never overlapping)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microhive import ConfigurationError, HandlerTimeout, MicroAgent, cron, on, periodic
from microhive.agent import schedules
from microhive.agent.specs import CronSpec, PeriodicSpec, make_cron
from microhive.testing import run_agents

from .helpers import adapter, eventually, run_for

MOSCOW = ZoneInfo("Europe/Moscow")


def at(*args: int, tz: Any = UTC) -> datetime:
    return datetime(*args, tzinfo=tz)


def fire(expression: str, moment: datetime, tz: str | None = "UTC") -> datetime:
    return make_cron(expression, None, tz).next_after(moment)


def fires(expression: str, moment: datetime, count: int, tz: str = "UTC") -> list[datetime]:
    spec = make_cron(expression, None, tz)
    result = []
    for _ in range(count):
        moment = spec.next_after(moment)
        result.append(moment)
    return result


# -- cron specs --------------------------------------------------------------------------


def test_weekdays_mon_fri() -> None:
    friday_nine = at(2024, 1, 5, 9, 0)
    assert fire("0 9 * * mon-fri", friday_nine) == at(2024, 1, 8, 9, 0)
    assert fire("0 9 * * mon-fri", at(2024, 1, 6, 12, 0)) == at(2024, 1, 8, 9, 0)
    week = fires("0 9 * * mon-fri", at(2024, 1, 1, 0, 0), 7)
    assert [d.day for d in week] == [1, 2, 3, 4, 5, 8, 9]
    assert {(d.hour, d.minute) for d in week} == {(9, 0)}
    assert fire("0 9 * * MON-FRI", friday_nine) == at(2024, 1, 8, 9, 0)


@pytest.mark.parametrize("expression", ["0 0 * * 0", "0 0 * * 7", "0 0 * * sun", "@weekly"])
def test_sunday_spellings(expression: str) -> None:
    sundays = fires(expression, at(2024, 1, 3, 15, 0), 3)
    assert sundays == [at(2024, 1, 7), at(2024, 1, 14), at(2024, 1, 21)]
    assert {d.weekday() for d in sundays} == {6}


def test_steps() -> None:
    assert fire("*/15 * * * *", at(2024, 1, 1, 10, 7, 30)) == at(2024, 1, 1, 10, 15)
    assert fire("*/15 * * * *", at(2024, 1, 1, 10, 45)) == at(2024, 1, 1, 11, 0)
    quarter = fires("*/15 * * * *", at(2024, 1, 1, 10, 0), 4)
    assert [d.minute for d in quarter] == [15, 30, 45, 0]
    assert fire("0 */4 * * *", at(2024, 1, 1, 5, 0)) == at(2024, 1, 1, 8, 0)
    assert fire("0 */4 * * *", at(2024, 1, 1, 20, 0)) == at(2024, 1, 2, 0, 0)
    assert [d.hour for d in fires("0 */4 * * *", at(2024, 1, 1), 6)] == [4, 8, 12, 16, 20, 0]


def test_names() -> None:
    assert fire("0 0 1 jan *", at(2024, 3, 1)) == at(2025, 1, 1)
    assert fire("0 0 1 JAN *", at(2024, 3, 1)) == at(2025, 1, 1)
    assert fire("30 12 * * sun", at(2024, 1, 1)) == at(2024, 1, 7, 12, 30)
    assert fire("0 0 1 jan-mar *", at(2024, 2, 15)) == at(2024, 3, 1)


@pytest.mark.parametrize(
    ("macro", "moment", "expected"),
    [
        ("@hourly", at(2024, 1, 1, 13, 20), at(2024, 1, 1, 14, 0)),
        ("@daily", at(2024, 1, 1, 13, 20), at(2024, 1, 2, 0, 0)),
        ("@midnight", at(2024, 1, 1, 13, 20), at(2024, 1, 2, 0, 0)),
        ("@weekly", at(2024, 1, 3, 13, 20), at(2024, 1, 7, 0, 0)),
        ("@monthly", at(2024, 1, 3, 13, 20), at(2024, 2, 1, 0, 0)),
        ("@yearly", at(2024, 1, 3, 13, 20), at(2025, 1, 1, 0, 0)),
    ],
)
def test_macros(macro: str, moment: datetime, expected: datetime) -> None:
    assert fire(macro, moment) == expected


def test_next_fire_is_strictly_after_a_fire_time() -> None:
    assert fire("0 9 * * *", at(2024, 1, 1, 9, 0)) == at(2024, 1, 2, 9, 0)
    assert fire("* * * * *", at(2024, 1, 1, 9, 0)) == at(2024, 1, 1, 9, 1)
    assert fire("* * * * *", at(2024, 1, 1, 9, 0, 59, 999999)) == at(2024, 1, 1, 9, 1)


def test_time_zone_moscow_versus_utc() -> None:
    moment = at(2024, 6, 1, 0, 0)
    in_moscow = fire("0 9 * * *", moment, "Europe/Moscow")
    assert in_moscow == at(2024, 6, 1, 6, 0), "09:00 MSK is 06:00 UTC"
    assert in_moscow.tzinfo == UTC, "fire times are in UTC: unambiguous across DST changes"
    local = in_moscow.astimezone(MOSCOW)
    assert (local.hour, local.utcoffset()) == (9, timedelta(hours=3))
    assert fire("0 9 * * *", moment, "UTC") == at(2024, 6, 1, 9, 0)
    # 10:00 MSK already passed: tomorrow 06:00 UTC
    assert fire("0 9 * * *", at(2024, 6, 1, 7, 0), "Europe/Moscow") == at(2024, 6, 2, 6, 0)
    # the moment may be in any zone: only the instant counts
    assert fire("0 9 * * *", moment.astimezone(ZoneInfo("America/New_York")), "UTC") == at(
        2024, 6, 1, 9, 0
    )


def test_weekday_is_taken_in_the_schedules_zone() -> None:
    # Monday 01:00 in Moscow is Sunday 22:00 in UTC
    sunday_noon = at(2024, 1, 7, 12, 0)
    assert fire("0 1 * * mon", sunday_noon, "Europe/Moscow") == at(2024, 1, 7, 22, 0)
    assert fire("0 1 * * mon", sunday_noon, "UTC") == at(2024, 1, 8, 1, 0)


def test_zone_object_is_accepted() -> None:
    spec = make_cron("0 9 * * *", None, MOSCOW)
    assert spec.tz is MOSCOW
    assert spec.next_after(at(2024, 6, 1)) == at(2024, 6, 1, 6, 0)


def test_no_zone_means_the_machines_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        spec = make_cron("0 9 * * *", None, None)
        assert spec.tz is None
        assert spec.next_after(at(2024, 6, 1)) == at(2024, 6, 2, 0, 0), "09:00 JST is 00:00 UTC"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: cron("61 * * * *"), "invalid cron expression '61 * * * *'"),
        (lambda: cron("* * *"), "invalid cron expression"),
        (lambda: cron(""), "invalid cron expression"),
        (lambda: cron("every minute"), "invalid cron expression"),
        (lambda: cron("0 24 * * *"), "invalid cron expression"),
        (lambda: cron("* * * * 8"), "invalid cron expression"),
        (lambda: cron("*/0 * * * *"), "invalid cron expression"),
        (lambda: cron("@reboot"), "invalid cron expression"),
        (lambda: cron(None), "invalid cron expression None"),  # type: ignore[arg-type]
        (lambda: cron("0 * * * * *"), "seconds are not supported"),
        (lambda: cron("0 9 * * *", tz="Mars/Olympus"), "unknown time zone 'Mars/Olympus'"),
        (lambda: cron("0 9 * * *", tz=""), "unknown time zone"),
        (lambda: cron("0 9 * * *", timeout=0), "timeout must be a positive number"),
    ],
)
def test_invalid_cron_is_refused_at_decoration(make: Callable[[], Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        make()
    assert words in str(info.value)


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *"])
def test_impossible_date_is_refused_at_decoration(expression: str) -> None:
    with pytest.raises(ConfigurationError):
        cron(expression)


# -- cron properties ---------------------------------------------------------------------

EXPRESSIONS = [
    "* * * * *",
    "*/15 * * * *",
    "0 */4 * * *",
    "0 9 * * mon-fri",
    "30 2 * * *",
    "0 0 * * 0",
    "@hourly",
    "@daily",
    "@weekly",
    "5 4 1 * *",
]
ZONES = ["UTC", "Europe/Moscow", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2037, 12, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(expression=st.sampled_from(EXPRESSIONS), zone=st.sampled_from(ZONES), moment=moments)
def test_next_fire_is_after_aligned_and_stable(
    expression: str, zone: str, moment: datetime
) -> None:
    spec = make_cron(expression, None, zone)
    following = spec.next_after(moment)
    assert following > moment
    in_utc = following.astimezone(UTC)
    assert in_utc.second == 0
    assert in_utc.microsecond == 0
    # arithmetic in UTC: aware datetimes in a DST zone subtract in wall-clock time
    assert spec.next_after(in_utc - timedelta(seconds=1)) == following
    assert spec.next_after(following) > following


PREDICATES: dict[str, Callable[[datetime], bool]] = {
    "*/15 * * * *": lambda d: d.minute % 15 == 0,
    "0 */4 * * *": lambda d: d.minute == 0 and d.hour % 4 == 0,
    "0 9 * * mon-fri": lambda d: (d.minute, d.hour) == (0, 9) and d.weekday() < 5,
    "0 1 * * sun": lambda d: (d.minute, d.hour) == (0, 1) and d.weekday() == 6,
}


@settings(max_examples=150, deadline=None)
@given(
    expression=st.sampled_from(sorted(PREDICATES)),
    zone=st.sampled_from(["UTC", "Europe/Moscow"]),
    moment=moments,
)
def test_next_fire_is_the_first_matching_minute(
    expression: str, zone: str, moment: datetime
) -> None:
    matches = PREDICATES[expression]
    tz = ZoneInfo(zone)
    following = make_cron(expression, None, zone).next_after(moment)
    assert matches(following.astimezone(tz))
    minute = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute < following:
        assert not matches(minute.astimezone(tz)), f"{minute} matches and comes first"
        minute += timedelta(minutes=1)


# -- the periodic loop -------------------------------------------------------------------


def spec(period: float, start_after: float = 0, jitter: float = 0) -> PeriodicSpec:
    return PeriodicSpec(period=period, timeout=None, start_after=start_after, jitter=jitter)


class Job:
    """Records start and end times of runs and how many ran at once."""

    def __init__(self, durations: Callable[[int], float] = lambda n: 0.0) -> None:
        self.durations = durations
        self.starts: list[float] = []
        self.ends: list[float] = []
        self.running = 0
        self.most = 0

    async def __call__(self) -> None:
        loop = asyncio.get_running_loop()
        self.starts.append(loop.time())
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            duration = self.durations(len(self.starts) - 1)
            if duration:
                await asyncio.sleep(duration)
        finally:
            self.running -= 1
            self.ends.append(loop.time())


# The loop tests run on virtual time (looptime): sleeps take no real time and the loop's
# clock moves only by what the code waits, so counts and instants are exact, whatever the
# machine's load.


@pytest.mark.looptime
async def test_periodic_runs_at_a_fixed_rate_from_the_start() -> None:
    job = Job()
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.02), job, adapter()), 0.25)
    assert job.starts[0] == begin, "the first run is immediate"
    offsets = [round(t - begin, 6) for t in job.starts]
    assert offsets == [round(n * 0.02, 6) for n in range(len(offsets))]
    assert len(offsets) in (12, 13)  # 0.24 s is the last due time, 0.25 s the end


@pytest.mark.looptime
async def test_slow_periodic_job_never_overlaps_and_skips(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tests.core")
    job = Job(lambda n: 0.05)
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.04), job, adapter()), 0.5)
    assert job.most == 1
    # skipping: runs start on the 0.04 grid after each 0.05 run, i.e. every 0.08 s;
    # running late ones back to back would start one every 0.05 s
    offsets = [round(t - begin, 6) for t in job.starts]
    assert offsets == [round(n * 0.08, 6) for n in range(len(offsets))]
    assert len(offsets) == 7
    skips = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert skips, "skipped runs are logged"
    assert skips[0].levelno == logging.WARNING
    assert skips[0].getMessage() == "run took too long: skipped 1 periodic run(s)"


@pytest.mark.looptime
async def test_late_runs_are_skipped_not_piled_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tests.core")
    job = Job(lambda n: 0.15 if n == 0 else 0.0)
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.02), job, adapter()), 0.3)
    offsets = [round(t - begin, 6) for t in job.starts]
    # the slow run covers the due times 0.02 ... 0.14; the next run is at 0.16, then every 0.02
    assert offsets[:3] == [0.0, 0.16, 0.18]
    assert all(round(b - a, 6) == 0.02 for a, b in itertools.pairwise(offsets[1:]))
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert skipped == ["run took too long: skipped 7 periodic run(s)"]


@pytest.mark.looptime
async def test_start_after_delays_the_first_run() -> None:
    job = Job()
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.02, start_after=0.12), job, adapter()), 0.25)
    offsets = [round(t - begin, 6) for t in job.starts]
    assert offsets[0] == 0.12
    assert offsets == [round(0.12 + n * 0.02, 6) for n in range(len(offsets))]


@pytest.mark.looptime
async def test_jitter_is_drawn_within_bounds_and_does_not_accumulate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return high  # always the largest jitter

    monkeypatch.setattr(schedules.random, "uniform", uniform)
    job = Job()
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.03, jitter=0.02), job, adapter()), 0.3)
    assert drawn and set(drawn) == {(0, 0.02)}
    offsets = [round(t - begin - index * 0.03, 6) for index, t in enumerate(job.starts)]
    assert len(offsets) >= 5
    assert set(offsets) == {0.02}, "each run is late by its own jitter only"


@pytest.mark.looptime
async def test_real_jitter_stays_within_bounds() -> None:
    job = Job()
    begin = asyncio.get_running_loop().time()
    await run_for(schedules.periodic_loop(spec(0.03, jitter=0.015), job, adapter()), 0.35)
    assert len(job.starts) >= 6
    offsets = [t - begin - i * 0.03 for i, t in enumerate(job.starts)]
    assert all(0 <= o <= 0.015 + 1e-9 for o in offsets), offsets
    assert max(offsets) - min(offsets) > 0, "the runs are actually spread"


@pytest.mark.looptime
async def test_no_jitter_draws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    def uniform(low: float, high: float) -> float:
        raise AssertionError("random.uniform called without jitter")

    monkeypatch.setattr(schedules.random, "uniform", uniform)
    job = Job()
    await run_for(schedules.periodic_loop(spec(0.02), job, adapter()), 0.08)
    assert len(job.starts) >= 4


# -- the cron loop -----------------------------------------------------------------------


class FastCron:
    """A cron spec that fires every 0.05 s (real cron resolution is a minute)."""

    def __init__(self) -> None:
        self.moments: list[datetime] = []

    def next_after(self, moment: datetime) -> datetime:
        self.moments.append(moment)
        return moment + timedelta(seconds=0.05)


async def test_cron_loop_fires_at_the_computed_times() -> None:
    fast = FastCron()
    job = Job()
    await run_for(schedules.cron_loop(fast, job, adapter()), 0.3)  # type: ignore[arg-type]
    assert len(job.starts) >= 2
    assert all(m.tzinfo is not None and m.utcoffset() == timedelta(0) for m in fast.moments)
    assert fast.moments == sorted(fast.moments)
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(job.starts))


async def test_cron_loop_never_overlaps_nor_piles_up() -> None:
    fast = FastCron()
    job = Job(lambda n: 0.12)
    await run_for(schedules.cron_loop(fast, job, adapter()), 0.45)
    assert job.most == 1
    assert len(job.starts) >= 2
    # the next fire is computed from "now" once a slow run ended, not from the missed time
    for ended, started in zip(job.ends, job.starts[1:], strict=False):
        assert started - ended >= 0.04


# -- schedules in agents -----------------------------------------------------------------


@pytest.mark.looptime
async def test_agent_periodic_job_runs_until_stopped() -> None:
    runs: list[float] = []

    class Ticker(MicroAgent):
        @periodic(0.02)
        async def tick(self) -> None:
            runs.append(asyncio.get_running_loop().time())

    async with run_agents(Ticker):
        await eventually(lambda: len(runs) >= 3)
    stopped_at = len(runs)
    await asyncio.sleep(0.06)
    assert len(runs) == stopped_at, "no run after stop"


@pytest.mark.looptime
async def test_agent_periodic_slow_job_never_overlaps() -> None:
    state = {"running": 0, "most": 0, "runs": 0}

    class Slow(MicroAgent):
        @periodic(0.02)
        async def work(self) -> None:
            state["running"] += 1
            state["most"] = max(state["most"], state["running"])
            state["runs"] += 1
            try:
                await asyncio.sleep(0.06)
            finally:
                state["running"] -= 1

    async with run_agents(Slow):
        await asyncio.sleep(0.3)
    assert state["most"] == 1
    assert state["runs"] == 5, "one run per 0.06 s, on the 0.02 s grid (virtual time)"


async def test_agent_periodic_exception_is_logged_hooked_and_schedule_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    hooks: list[tuple[str, Any, dict[str, Any]]] = []
    runs: list[int] = []

    class Failing(MicroAgent):
        @periodic(0.02)
        async def tick(self) -> None:
            runs.append(1)
            raise ValueError(f"boom {len(runs)}")

        @on("error_tick")
        def on_tick_error(self, exc: BaseException, **kwargs: Any) -> None:
            hooks.append(("error_tick", exc, kwargs))

        @on("error")
        async def on_error(self, exc: BaseException, **kwargs: Any) -> None:
            hooks.append(("error", exc, kwargs))

    async with run_agents(Failing):
        await eventually(lambda: len(hooks) >= 6)
    assert len(runs) >= 3, "the schedule kept running"
    assert [h[0] for h in hooks[:4]] == ["error_tick", "error", "error_tick", "error"]
    _, exc, kwargs = hooks[0]
    assert isinstance(exc, ValueError)
    assert str(exc) == "boom 1"
    assert kwargs == {"handler": "tick", "message": None}
    failures = [r for r in caplog.records if "scheduled run failed" in r.getMessage()]
    assert failures
    assert failures[0].levelno == logging.ERROR
    assert "ValueError: boom 1" in failures[0].getMessage()
    assert failures[0].exc_info is not None, "the traceback is logged"


async def test_agent_periodic_timeout_is_logged_hooked_and_schedule_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="microhive")
    errors: list[BaseException] = []
    cancelled: list[int] = []

    class Stuck(MicroAgent):
        @periodic(0.03, timeout=0.01)
        async def hang(self) -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.append(1)
                raise

        @on("error")
        def on_error(self, exc: BaseException) -> None:
            errors.append(exc)

    async with run_agents(Stuck):
        await eventually(lambda: len(errors) >= 3)
    assert all(isinstance(e, HandlerTimeout) for e in errors)
    assert "hang exceeded its timeout of 0.01 s" in str(errors[0])
    assert len(cancelled) >= 3, "the stuck run was cancelled"
    failures = [r for r in caplog.records if "scheduled run failed" in r.getMessage()]
    assert failures and "HandlerTimeout" in failures[0].getMessage()
    assert not failures[0].exc_info, "no traceback for a timeout"


async def test_agent_periodic_start_after() -> None:
    runs: list[float] = []

    class Late(MicroAgent):
        @periodic(0.02, start_after=0.15)
        async def tick(self) -> None:
            runs.append(asyncio.get_running_loop().time())

    begin = asyncio.get_running_loop().time()
    async with run_agents(Late):
        await eventually(lambda: len(runs) >= 2)
    assert runs[0] - begin >= 0.15 - 0.002


async def test_agent_cron_job_runs_and_errors_reach_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CronSpec, "next_after", lambda self, m: m + timedelta(seconds=0.03))
    runs: list[int] = []
    errors: list[tuple[BaseException, str]] = []

    class Nightly(MicroAgent):
        @cron("0 3 * * *", tz="Europe/Moscow")
        async def report(self) -> None:
            runs.append(1)
            if len(runs) % 2 == 0:
                raise RuntimeError("every other run fails")

        @on("error_report")
        def failed(self, exc: BaseException, handler: str) -> None:
            errors.append((exc, handler))

    async with run_agents(Nightly):
        await eventually(lambda: len(runs) >= 4)
    assert len(errors) >= 1
    assert isinstance(errors[0][0], RuntimeError)
    assert errors[0][1] == "report"

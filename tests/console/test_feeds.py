"""The console's samples: rates from what was sent and how the length moved; the fan-out
to pages that read slowly."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from microhive.console.feeds import Hub, QueueSeries

samples = st.lists(
    st.tuples(st.floats(0.05, 5), st.integers(0, 10_000), st.integers(0, 500)), min_size=2
)


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(samples)
def test_rates_with_replay(steps: list[tuple[float, int, int]]) -> None:
    """in/s is what was sent per second; out/s what left the queue (sent minus growth),
    never negative."""
    series = QueueSeries("q", replay=True)
    at, previous = 1000.0, None
    for gap, length, sent in steps:
        at += gap
        series.sent_total += sent
        sample = series.add(at, length, 0)
        if previous is None:
            assert sample["sent_rate"] is None and sample["done_rate"] is None
        else:
            assert abs(sample["sent_rate"] - sent / gap) < 1e-6 * max(1.0, sent / gap)
            expected = max(0.0, (sent - (length - previous)) / gap)
            assert abs(sample["done_rate"] - expected) < 1e-6 * max(1.0, expected)
        previous = length


@settings(deadline=None)  # a loaded machine is slow, not wrong
@given(samples)
def test_rates_without_replay(steps: list[tuple[float, int, int]]) -> None:
    """Without replay in/s is unknown and out/s is how fast the length fell."""
    series = QueueSeries("q", replay=False)
    at, previous = 1000.0, None
    for gap, length, _ in steps:
        at += gap
        sample = series.add(at, length, None)
        assert sample["sent_rate"] is None
        if previous is not None:
            assert sample["done_rate"] >= 0
            assert (sample["done_rate"] > 0) == (length < previous)
        previous = length


def test_an_engine_error_leaves_a_gap_not_a_zero() -> None:
    series = QueueSeries("q", replay=True)
    series.add(1.0, 5, 0)
    gap = series.add(2.0, None, None)
    assert gap["length"] is None and gap["done_rate"] is None
    assert series.history()["lengths"] == [5, None]


async def test_a_slow_page_loses_its_oldest_events_only() -> None:
    hub = Hub(backlog=3)
    async with hub.stream() as slow, hub.stream() as other:
        for n in range(5):
            hub.publish({"n": n})
        assert [slow.get_nowait()["n"] for _ in range(3)] == [2, 3, 4]
        assert other.qsize() == 3
    assert hub.clients == 0
    await asyncio.sleep(0)

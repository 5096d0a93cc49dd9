"""The live views' bookkeeping, for any order of arrivals (hypothesis), and from threads."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from hypothesis import given, settings
from hypothesis import strategies as st

from microhive import Envelope, Kind
from microhive.web import Latest, Tail
from microhive.web.views import follow

arrivals = st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1e6)), max_size=60)


def envelope(n: int, key: str = "", sent_at: float = 0.0) -> Envelope:
    return Envelope(Kind.MESSAGE, "q", {"n": n}, "test", headers={"x-key": key}, sent_at=sent_at)


@settings(max_examples=200)
@given(size=st.integers(1, 10), count=st.integers(0, 40))
def test_a_tail_holds_the_newest_size_in_order(size: int, count: int) -> None:
    tail = Tail("q", size)
    sent = [envelope(n) for n in range(count)]
    for item in sent:
        tail.add(item)
    assert tail.envelopes() == sent[-size:]
    assert tail.received == count and len(tail) == min(size, count)
    assert tail.latest == (sent[-1] if sent else None)
    assert all(tail.seen(e.id) for e in sent[-size:])
    assert not any(tail.seen(e.id) for e in sent[:-size])


@settings(max_examples=200)
@given(arrivals)
def test_latest_keeps_the_newest_of_each_key_whatever_the_arrival_order(
    items: list[tuple[str, float]],
) -> None:
    latest = Latest("q", 100)
    sent = [envelope(n, key, at) for n, (key, at) in enumerate(items)]
    for item in sent:
        latest.add(item)
    for key in "abc":
        mine = [e for e in sent if e.headers["x-key"] == key]
        got = latest.get(key)
        if not mine:
            assert got is None
        else:
            assert got is not None and got.sent_at == max(e.sent_at for e in mine)
    assert set(latest.items()) == {key for key, _ in items}


async def test_follow_reopens_a_failed_tail_without_taking_anything_twice() -> None:
    sent = [envelope(n) for n in range(5)]
    opened: list[int] = []

    async def source(replay: int) -> AsyncIterator[Envelope]:
        opened.append(replay)
        if len(opened) == 1:
            for item in sent[:3]:
                yield item
            raise ConnectionError("engine restarted")
        for item in sent[-replay:]:  # a reopened tail replays its history again
            yield item

    tail = Tail("q", 4)
    await asyncio.wait_for(follow(tail, source, 4), 30)
    assert opened == [4, 4]
    assert tail.payloads() == [{"n": n} for n in range(1, 5)]
    assert tail.received == 5


def test_a_reader_thread_waits_for_what_the_loop_adds() -> None:
    tail = Tail("q", 3)
    results: list[bool] = []
    reader = threading.Thread(target=lambda: results.append(tail.wait(2, timeout=30)))
    reader.start()
    tail.add(envelope(1))
    tail.add(envelope(2))
    reader.join(30)
    assert results == [True]
    assert tail.wait(3, timeout=0.01) is False

"""The hand-over between a consumer's read-ahead and its workers (every networked transport)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microhive.errors import ConsumerClosed
from microhive.transports.handover import Handover


async def test_buffered_items_come_out_in_order() -> None:
    handover: Handover[int] = Handover()
    for n in range(3):
        handover.give(n)
    assert len(handover) == 3
    assert [await handover.take() for _ in range(3)] == [0, 1, 2]
    assert len(handover) == 0


async def test_the_longest_waiting_worker_gets_the_next_item() -> None:
    handover: Handover[str] = Handover()
    first = asyncio.create_task(handover.take())
    second = asyncio.create_task(handover.take())
    await asyncio.sleep(0)
    handover.give("a")
    handover.give("b")
    assert (await first, await second) == ("a", "b")
    assert len(handover) == 0


async def test_one_waiting_worker_is_woken_at_a_time() -> None:
    """Waking a task costs more than most handlers: the next waiter is woken only when the
    woken one has run and more is buffered."""
    handover: Handover[int] = Handover()
    takers = [asyncio.create_task(handover.take()) for _ in range(3)]
    await asyncio.sleep(0)
    handover.give_all([1, 2, 3, 4])
    assert len(handover) == 3  # 1 is on its way to the first waiter, nobody else is woken
    await asyncio.sleep(0)
    assert takers[0].done() and not takers[1].done()
    assert len(handover) == 2  # the first took 1 and woke the second with 2
    assert [await task for task in takers] == [1, 2, 3]
    assert handover.clear() == [4]


async def test_give_all_front_goes_ahead_of_the_buffer_in_order() -> None:
    handover: Handover[int] = Handover()
    handover.give_all([5, 6])
    handover.give_all([1, 2], front=True)
    assert handover.clear() == [1, 2, 5, 6]


async def test_give_all_serves_waiters_first() -> None:
    handover: Handover[int] = Handover()
    waiting = asyncio.create_task(handover.take())
    await asyncio.sleep(0)
    handover.give_all([1, 2, 3], front=True)
    assert await waiting == 1
    assert handover.clear() == [2, 3]


async def test_a_worker_cancelled_as_it_is_handed_an_item_puts_it_back_first() -> None:
    handover: Handover[int] = Handover()
    handover.give_all([])
    waiting = asyncio.create_task(handover.take())
    await asyncio.sleep(0)
    handover.give(1)  # the waiter's future is resolved, the task has not run yet
    handover.give(2)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert handover.clear() == [1, 2]


async def test_a_cancelled_waiter_is_skipped() -> None:
    handover: Handover[int] = Handover()
    gone = asyncio.create_task(handover.take())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    handover.give(7)
    assert handover.clear() == [7]


async def test_fail_wakes_every_waiting_worker_with_the_error() -> None:
    handover: Handover[int] = Handover()
    waiting = [asyncio.create_task(handover.take()) for _ in range(3)]
    await asyncio.sleep(0)
    handover.fail(ConsumerClosed("jobs"))
    for task in waiting:
        with pytest.raises(ConsumerClosed):
            await task
    handover.give(1)  # nobody waits any more: buffered
    assert handover.clear() == [1]


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.sampled_from(["give", "take", "cancel"]), max_size=40))
def test_nothing_given_is_lost_or_duplicated(steps: list[str]) -> None:
    """Whatever mix of gives, takes and cancelled takes: every item is taken once or is
    still buffered, in the order given."""

    async def run() -> None:
        handover: Handover[int] = Handover()
        taken: list[int] = []
        tasks: list[asyncio.Task[int]] = []
        given = 0
        for step in steps:
            if step == "give":
                handover.give(given)
                given += 1
            elif step == "take":
                tasks.append(asyncio.create_task(handover.take()))
            else:
                waiting = [task for task in tasks if not task.done()]
                if waiting:
                    waiting[0].cancel()
            await asyncio.sleep(0)
        for task in tasks:
            if not task.done():
                task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                taken.append(await task)
        rest = handover.clear()
        assert sorted(taken + rest) == list(range(given))
        assert rest == sorted(rest)

    asyncio.run(run())

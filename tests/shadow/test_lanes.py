"""Lanes: whether a record was written while a read was on its way, in bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from memshift.shadow import lanes as lanes_module
from memshift.shadow.lanes import Lanes
from memshift.shadow.records import GLOBAL


async def _leave(mine: asyncio.Future[bool]) -> None:
    mine.set_result(True)
    await asyncio.sleep(0)  # the lane is left in the future's callback


async def _write(lanes: Lanes, key: str) -> None:
    _, mine = lanes.join((key,), ())
    await _leave(mine)


async def test_a_write_since_the_snapshot_unsettles_its_record_only() -> None:
    lanes = Lanes()
    before = lanes.snapshot("memory:1")
    assert lanes.settled("memory:1", before)
    _, mine = lanes.join(("memory:1",), ())
    assert not lanes.settled("memory:1", before)  # pending
    assert not lanes.settled("memory:1", lanes.snapshot("memory:1"))
    await _leave(mine)
    assert not lanes.settled("memory:1", before)  # written since
    assert lanes.settled("memory:2", lanes.snapshot("memory:2"))
    assert lanes.settled("memory:1", lanes.snapshot("memory:1"))
    any_before = lanes.snapshot(None)
    await _write(lanes, "memory:3")
    assert not lanes.settled(None, any_before)


async def test_records_written_long_ago_are_forgotten_and_count_as_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lanes_module, "TOUCHED_MAX", 3)
    lanes = Lanes()
    before = lanes.snapshot("memory:1")
    for n in range(1, 6):
        await _write(lanes, f"memory:{n}")
    assert ["memory:3", "memory:4", "memory:5"] == list(lanes.touched)
    assert not lanes.settled("memory:1", before)  # forgotten: maybe written since
    assert not lanes.settled("memory:9", before)  # never written, but cannot tell now
    after = lanes.snapshot("memory:1")
    assert lanes.settled("memory:1", after)
    await _write(lanes, "memory:3")  # written again: the newest, kept
    assert ["memory:4", "memory:5", "memory:3"] == list(lanes.touched)


async def test_a_keyless_write_is_a_barrier_both_ways() -> None:
    """It waits for every write before it, every later write waits for it, and it waits
    for the backlog to drain."""
    lanes = Lanes()
    _, first = lanes.join(("memory:1",), ())
    waits, barrier = lanes.join((), ())
    assert [first] == waits
    waits, later = lanes.join(("memory:2",), ())
    assert [barrier] == waits  # another record, yet behind the barrier
    assert not lanes.is_blocked((), ())
    lanes.block(7, ("memory:5",))
    assert lanes.is_blocked((), ())  # behind the backlog, whichever record it holds
    assert not lanes.is_blocked(("memory:6",), ())
    lanes.block(8, (GLOBAL,))  # a keyless write in the backlog holds every record back
    assert lanes.is_blocked(("memory:6",), ())
    lanes.release(8)
    lanes.release(7)
    assert not lanes.blocked
    for future in (first, barrier, later):
        future.set_result(True)


async def test_blocks_are_lifted_by_the_write_that_set_them() -> None:
    """A write blocks its records once however often it is held, and only it lifts them."""
    lanes = Lanes()
    lanes.block(1, ("memory:1", "memory:2"))
    lanes.block(1, ("memory:1", "memory:2"))  # held again: still one block each
    lanes.block(2, ("memory:2",))
    lanes.release(3)  # a write that blocked nothing lifts nothing
    assert {"memory:1": 1, "memory:2": 2} == dict(lanes.blocked)
    lanes.release(1)
    assert {"memory:2": 1} == dict(lanes.blocked)
    assert lanes.is_blocked(("memory:2",), ())


async def test_locks_of_several_records_and_the_barrier() -> None:
    """Two writes over overlapping records never wait for each other in a circle, and a
    barrier lock waits for every keyed lock and holds the later ones back."""
    lanes = Lanes()
    order: list[str] = []

    async def write(name: str, keys: tuple[str, ...], barrier: bool = False) -> None:
        async with lanes.lock(keys, barrier=barrier):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    async with asyncio.timeout(5):
        await asyncio.gather(
            write("a", ("memory:2", "memory:1")),
            write("b", ("memory:1", "memory:2")),
            write("k", (), barrier=True),
            write("c", ("memory:3",)),
        )
    assert order.index("k+") > max(order.index("a-"), order.index("b-"))
    assert order.index("c+") > order.index("k-")  # came after the barrier: waits for it


async def test_a_write_cancelled_while_it_waits_leaves_the_holder_its_lock() -> None:
    """A write cancelled while another holds its record's lock takes nothing from it:
    the record stays locked until its holder leaves, then the next write takes it."""
    lanes = Lanes()
    holding, leave = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with lanes.lock(("memory:1",)):
            holding.set()
            await leave.wait()

    async def waiter() -> None:
        async with lanes.lock(("memory:1",)):
            pass

    async with asyncio.timeout(5), asyncio.TaskGroup() as tasks:
        first = tasks.create_task(holder())
        await holding.wait()
        cancelled = tasks.create_task(waiter())
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        later = tasks.create_task(waiter())
        await asyncio.sleep(0.01)
        assert not later.done()  # the holder still holds it
        leave.set()
        await asyncio.gather(first, later)
    assert not lanes._locks  # every lock given back and forgotten

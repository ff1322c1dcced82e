"""Lanes: whether a record was written while a read was on its way, in bounded memory."""

from __future__ import annotations

import asyncio

import pytest

from memshift.shadow import lanes as lanes_module
from memshift.shadow.lanes import Lanes


async def _leave(mine: asyncio.Future[bool]) -> None:
    mine.set_result(True)
    await asyncio.sleep(0)  # the lane is left in the future's callback


async def _write(lanes: Lanes, key: str) -> None:
    _, mine = lanes.join(key, ())
    await _leave(mine)


async def test_a_write_since_the_snapshot_unsettles_its_record_only() -> None:
    lanes = Lanes()
    before = lanes.snapshot("memory:1")
    assert lanes.settled("memory:1", before)
    _, mine = lanes.join("memory:1", ())
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

"""The bounded scheduler: limits, dropping when full, one error hook, clean close."""

from __future__ import annotations

import asyncio

from memshift.scheduler import Scheduler


async def test_drops_beyond_limit_and_pending() -> None:
    """At most limit run at once; past limit + pending, jobs are dropped and counted."""
    errors: list[str] = []
    running = 0
    peak = 0
    gate = asyncio.Event()

    async def job() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    sched = Scheduler(
        name="t",
        limit=2,
        pending_limit=3,
        close_timeout=1,
        on_error=lambda label, exc: errors.append(label),
    )
    accepted = [sched.spawn(job(), f"j{i}") for i in range(8)]
    assert [True] * 5 + [False] * 3 == accepted
    assert 3 == sched.dropped
    await asyncio.sleep(0.01)
    gate.set()
    await sched.close()
    assert (2, []) == (peak, errors)


async def test_failures_go_to_the_hook_and_close_cancels() -> None:
    """A failing job reaches on_error; close cancels what outlives close_timeout."""
    seen: list[tuple[str, str]] = []

    async def boom() -> None:
        raise RuntimeError("bad")

    async def forever() -> None:
        await asyncio.sleep(3600)

    sched = Scheduler(
        name="t",
        limit=4,
        pending_limit=0,
        close_timeout=0.05,
        on_error=lambda label, exc: seen.append((label, str(exc))),
    )
    sched.spawn(boom(), "boom")
    sched.spawn(forever(), "forever")
    await asyncio.sleep(0.01)
    await sched.close()
    assert ([("boom", "bad")], 0) == (seen, sched.active)
    assert not sched.spawn(forever(), "late")


async def test_daemons_are_cancelled_at_once_on_close() -> None:
    """A daemon loop takes no slot and does not hold up close."""
    sched = Scheduler(
        name="t", limit=1, pending_limit=0, close_timeout=30, on_error=lambda label, exc: None
    )

    async def forever() -> None:
        await asyncio.sleep(3600)

    assert sched.spawn(forever(), "loop", daemon=True)
    assert sched.spawn(forever(), "job-slot-still-free") is True
    sched2 = Scheduler(
        name="t2", limit=1, pending_limit=0, close_timeout=0.01, on_error=lambda label, exc: None
    )
    assert sched2.spawn(forever(), "loop", daemon=True)
    async with asyncio.timeout(1):
        await sched2.close()
    sched.close_timeout = 0.01
    await sched.close()

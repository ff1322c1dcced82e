"""The write log on a real state database: group commit, isolation of a failure, states."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Connection, select
from structlog.testing import capture_logs

from memshift.database import Database
from memshift.scheduler import Scheduler
from memshift.shadow import groupcommit
from memshift.shadow.writelog import BACKLOG, DIVERGENT, INTENT, Answered, WriteLog
from memshift.statedb import open_state, writes


@contextlib.asynccontextmanager
async def running_log(db_url: str) -> AsyncIterator[WriteLog]:
    """A write log on a fresh state database, its flusher running."""
    state = open_state(db_url)
    wal = WriteLog(state)
    background = Scheduler(
        name="test", limit=1, pending_limit=0, close_timeout=1, on_error=lambda *_: None
    )
    background.spawn(wal.group.flusher(), "write-log", daemon=True)
    await asyncio.sleep(0)
    try:
        yield wal
    finally:
        await background.close()
        state.close()


@pytest.fixture
async def log(db_url: str) -> AsyncIterator[WriteLog]:
    """A write log on a fresh state database, its flusher running."""
    async with running_log(db_url) as wal:
        yield wal


async def _intent(wal: WriteLog, n: int, record_key: str | None = None) -> int:
    return await wal.intent(
        idem_key=f"k{n}",
        user="user1",
        route="memories.item",
        method="PATCH",
        path=f"/v1/memories/{n}",
        body=b'{"content": "x"}',
        keys=(record_key,) if record_key else (),
        depends=(),
        primary="legacy",
    )


def _rows(db: Database) -> list[Any]:
    return db.read_sync(lambda conn: conn.execute(select(writes).order_by(writes.c.id)).all())


async def test_concurrent_writes_share_commits_and_keep_their_order(log: WriteLog) -> None:
    ids = await asyncio.gather(*(_intent(log, n) for n in range(40)))
    assert sorted(ids) == ids and len(set(ids)) == 40  # logged in the order they came
    assert 40 == log.group.operations
    assert log.group.commits < 40  # group commit: many writes per transaction
    assert [f"k{n}" for n in range(40)] == [r.idem_key for r in _rows(log.db)]
    for entry_id in ids:
        log.end_soon(entry_id)
    async with asyncio.timeout(10):
        while await log.unfinished():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_commit_waits_for_intents_a_few_turns_of_the_loop_behind(log: WriteLog) -> None:
    """Requests reach their intents a turn or two apart: one commit takes them all."""

    async def late(n: int) -> int:
        for _ in range(n):
            await asyncio.sleep(0)
        return await _intent(log, n)

    await _intent(log, 100)  # the flusher waits for the next
    commits = log.group.commits
    await asyncio.gather(*(late(n) for n in range(groupcommit.GATHER_TURNS)))
    assert commits + 1 == log.group.commits


async def test_a_failing_operation_fails_alone(log: WriteLog) -> None:
    def broken(conn: Connection) -> None:
        raise RuntimeError("broken operation")

    with capture_logs() as logs:
        first = log.group.post(lambda conn: conn.execute(writes.insert().values(**_row("a"))))
        failing = log.group.post(broken)
        log.group.post_soon(broken, "cleanup")
        last = log.group.post(lambda conn: conn.execute(writes.insert().values(**_row("b"))))
        await asyncio.gather(first, last)
        with pytest.raises(RuntimeError, match="broken operation"):
            await failing
    assert ["a", "b"] == [r.idem_key for r in _rows(log.db)]
    failed = [e for e in logs if e["event"] == "group_commit_failed"]
    assert [("cleanup", "error")] == [(e["operation"], e["log_level"]) for e in failed]


async def test_the_primary_answer_is_kept_with_an_outcome_only(log: WriteLog) -> None:
    mirrored, backlog, divergent = [await _intent(log, n) for n in range(3)]
    assert [(INTENT, None, None)] * 3 == [
        (r.state, r.primary_status, r.primary_body) for r in _rows(log.db)
    ]
    await log.forget(mirrored)
    await log.backlog(backlog, "timeout", Answered(("memory:7",), 201, b'{"id": 7}'))
    await log.divergent(divergent, 422, b"refused", "rejected", Answered((), 200, b"{}"))
    await log.backlog(backlog, "timeout")  # a later attempt: the answer stays
    assert [
        (BACKLOG, "memory:7", 201, b'{"id": 7}', 2),
        (DIVERGENT, None, 200, b"{}", 0),
    ] == [
        (r.state, r.record_key, r.primary_status, bytes(r.primary_body), r.attempts)
        for r in _rows(log.db)
    ]
    assert [BACKLOG] == [e.state for e in await log.unfinished()]


async def test_clean_up_rides_along_with_a_later_commit(
    log: WriteLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ended write is not a commit of its own: new intents leave it waiting, the next
    other operation takes it along; meanwhile it is not counted as backlog."""
    monkeypatch.setattr(groupcommit, "CLEAN_UP_S", 60.0)
    ended, waiting = await _intent(log, 1), await _intent(log, 2)
    commits = log.group.commits
    log.end_soon(ended)
    assert 1 == (await log.figures())["backlog"]  # the one still waiting
    await _intent(log, 3)
    assert (commits + 1, [1, 2, 3]) == (
        log.group.commits,
        [int(r.idem_key[1:]) for r in _rows(log.db)],
    )
    await log.backlog(waiting, "timeout")
    assert [2, 3] == [int(r.idem_key[1:]) for r in _rows(log.db)]


async def test_clean_up_is_committed_within_its_delay(log: WriteLog) -> None:
    ended = await _intent(log, 1)
    log.end_soon(ended)
    assert 1 == len(_rows(log.db))
    async with asyncio.timeout(10 + groupcommit.CLEAN_UP_S):
        while _rows(log.db):  # noqa: ASYNC110
            await asyncio.sleep(groupcommit.CLEAN_UP_S / 4)


def test_clean_up_falls_due_on_uvloop(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """uvloop's timers count whole milliseconds and fire before the loop's clock reaches
    a delay like this one: clean-up must still fall due when its timer fires."""
    uvloop = pytest.importorskip("uvloop")
    monkeypatch.setattr(groupcommit, "CLEAN_UP_S", 0.0204)

    async def ends_committed() -> None:
        async with running_log(db_url) as wal:
            for n in range(5):
                wal.end_soon(await _intent(wal, n))
                async with asyncio.timeout(10):
                    while _rows(wal.db):  # noqa: ASYNC110
                        await asyncio.sleep(0.005)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(ends_committed())


def _row(key: str) -> dict[str, Any]:
    return {
        "at": 0,
        "state": INTENT,
        "idem_key": key,
        "user": "user1",
        "route": "r",
        "method": "POST",
        "path": "/v1/memories",
        "body": b"",
        "depends": "[]",
        "primary_store": "legacy",
        "attempts": 0,
    }

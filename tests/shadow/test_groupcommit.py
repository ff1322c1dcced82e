"""Group commit on a real SQLite file: operations on the driver's connection share a
commit begun there, and one that fails, fails alone."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from memshift.database import Database, driver_execute
from memshift.shadow.groupcommit import GroupCommit


def _insert(value: str, conn: Connection) -> int:
    return int(driver_execute(conn, "INSERT INTO t (v) VALUES (?)", (value,)).lastrowid)


@pytest.mark.parametrize("driver", [True, False], ids=["on_the_driver", "through_sqlalchemy"])
async def test_a_group_shares_a_commit_and_a_failing_operation_fails_alone(
    tmp_path: Path, driver: bool
) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db")
    db.write_sync(
        lambda conn: conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    )
    group = GroupCommit(db)
    flusher = asyncio.ensure_future(group.flusher())
    try:
        await asyncio.sleep(0)  # the flusher waits for operations
        group.post_rows("INSERT INTO t (v) VALUES (?)", ("c",))  # clean-up rides along
        posted = [
            group.post(partial(_insert, v), driver=driver) for v in ("a", "a", "b")
        ]  # in one turn: one group
        results = await asyncio.gather(*posted, return_exceptions=True)
        await group.commit_now()
        assert isinstance(results[0], int) and isinstance(results[2], int)
        assert isinstance(results[1], IntegrityError)
        rows = db.read_sync(lambda conn: conn.execute(text("SELECT v FROM t ORDER BY id")).all())
        assert ["c", "a", "b"] == [r[0] for r in rows]
        assert 1 <= group.commits <= 3
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        db.close()

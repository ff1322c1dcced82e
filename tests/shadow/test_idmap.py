"""The id map's pairs posted with the write log's group commit, on a real state database.

A pair replaces any pair of either of its ids, in the order the pairs were posted,
whether a commit carries them as one statement (SQLite) or as operations of their own.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from memshift.shadow.idmap import IdMap
from memshift.statedb import id_map
from tests.shadow.test_writelog import running_log


def _pairs(rows: list[Any]) -> set[tuple[str, str, str]]:
    return {(row.kind, row.legacy_id, row.new_id) for row in rows}


async def test_posted_pairs_replace_pairs_of_either_id_in_posting_order(db_url: str) -> None:
    async with running_log(db_url) as wal:
        group = wal.group
        posted = IdMap(wal.db, write=group.submit, post=group.post_soon, post_row=group.post_rows)
        await posted.record("memory", 1, 10, wait=False)
        await posted.record("memory", 2, 10, wait=False)  # new's id 10 given again
        await posted.record("memory", 1, 11, wait=False)  # legacy's id 1 given again
        await posted.record("memory", 3, 12, wait=False)
        await posted.record("memory", 3, 13, wait=False)  # the same id twice in a commit
        await posted.record("context", 1, 10, wait=False)  # another kind: its own pairs
        assert posted.cached("memory", 1) == 11  # usable before the commit
        await group.commit_now()
        rows = wal.db.read_sync(lambda conn: conn.execute(select(id_map)).all())
        assert _pairs(rows) == {
            ("memory", "2", "10"),
            ("memory", "1", "11"),
            ("memory", "3", "13"),
            ("context", "1", "10"),
        }
        fresh = IdMap(wal.db)  # no cache: what the state db holds
        assert await fresh.translate("memory", [1, 2, 3], "legacy", "new") == {1: 11, 2: 10, 3: 13}
        assert await fresh.translate("memory", [10, 12], "new", "legacy") == {10: 2}

"""The database layer's quick writes on SQLite: on the loop when free, waiting when not."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from sqlalchemy import Connection, text

from memshift.database import Database


def _setup(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))


async def test_a_quick_write_waits_for_a_lock_held_elsewhere(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/q.db")
    try:
        db.write_sync(_setup)
        other = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        other.execute("INSERT INTO t (v) VALUES ('theirs')")
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        await db.write_quick(lambda conn: conn.execute(text("INSERT INTO t (v) VALUES ('ours')")))
        # The quick connection is as good as before: the next write goes through it.
        await db.write_quick(lambda conn: conn.execute(text("INSERT INTO t (v) VALUES ('next')")))
        rows = db.read_sync(lambda conn: conn.execute(text("SELECT v FROM t ORDER BY id")).all())
        assert [("theirs",), ("ours",), ("next",)] == [tuple(r) for r in rows]
        other.close()
    finally:
        db.close()


async def test_quick_writes_leave_checkpoints_to_the_writer_thread(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/c.db")
    try:
        db.write_sync(_setup)
        for i in range(1500):  # more frames than SQLite's automatic checkpoint allows
            await db.write_quick(
                lambda conn, i=i: conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": i})
            )
        frames, copied = await db.checkpoint()
        assert frames > 1000  # nothing was checkpointed on the way (on the loop)
        assert copied == frames
        count = db.read_sync(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar())
        assert 1500 == count
    finally:
        db.close()


async def test_checkpoint_is_nothing_to_do_on_postgresql(make_pg_url: object) -> None:
    assert callable(make_pg_url)
    db = Database(make_pg_url())
    try:
        assert (0, 0) == await db.checkpoint()
        db.write_sync(lambda conn: conn.execute(text("CREATE TABLE t (v TEXT)")))
        await db.write_quick(lambda conn: conn.execute(text("INSERT INTO t (v) VALUES ('pg')")))
        assert 1 == db.read_sync(lambda conn: conn.execute(text("SELECT count(*) FROM t")).scalar())
    finally:
        db.close()

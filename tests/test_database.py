"""The database layer on SQLite: quick writes (on the loop when free, waiting when not)
and grouped writes (many writes, one commit, each failing alone)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from memshift.database import Database, driver_execute


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


def _insert(value: str, conn: Connection) -> int:
    result = conn.execute(text("INSERT INTO t (v) VALUES (:v) RETURNING id"), {"v": value})
    return int(result.scalar_one())


def _values(db: Database) -> list[str]:
    rows = db.read_sync(lambda conn: conn.execute(text("SELECT v FROM t ORDER BY id")).all())
    return [r[0] for r in rows]


async def _grouped(db: Database, *writes: object) -> list[object]:
    """Run ``writes`` as one group: the writer thread is held until all are queued."""
    hold = threading.Event()
    first = asyncio.ensure_future(db.write(lambda conn: hold.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread now waits in the first write
    queued = [asyncio.ensure_future(db.write(w)) for w in writes]  # type: ignore[arg-type]
    await asyncio.sleep(0)
    groups = db.groups
    hold.set()
    assert await first
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert db.groups == groups + 1  # all of them in one transaction
    return results


async def test_grouped_writes_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/g.db", group_writes=True)
    try:
        db.write_sync(
            lambda conn: conn.execute(
                text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
            )
        )

        def half_then_fail(conn: Connection) -> None:
            _insert("undone", conn)
            raise ValueError("refused")

        results = await _grouped(
            db,
            lambda conn: _insert("a", conn),
            half_then_fail,
            lambda conn: _insert("a", conn),  # the unique value the first one took
            lambda conn: conn.execute(text("SELECT v FROM t ORDER BY id")).scalars().all(),
            lambda conn: _insert("b", conn),
        )
        assert isinstance(results[0], int)
        assert isinstance(results[1], ValueError)
        assert isinstance(results[2], IntegrityError)
        assert ["a"] == results[3]  # a write sees those before it, not those undone
        assert isinstance(results[4], int)
        assert ["a", "b"] == _values(db)
    finally:
        db.close()


async def test_a_group_whose_commit_fails_keeps_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/f.db", group_writes=True)
    try:

        def schema(conn: Connection) -> None:
            _setup(conn)
            conn.execute(
                text(
                    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES"
                    " t (id) DEFERRABLE INITIALLY DEFERRED)"
                )
            )

        db.write_sync(schema)
        orphan = "INSERT INTO child (parent) VALUES (999)"  # refused only at COMMIT
        results = await _grouped(
            db,
            lambda conn: _insert("lost", conn),
            lambda conn: conn.execute(text(orphan)),
        )
        assert all(isinstance(r, IntegrityError) for r in results)
        assert [] == _values(db)
        # The writer path is as good as before.
        assert 1 == await db.write(lambda conn: _insert("kept", conn))
        assert ["kept"] == _values(db)
    finally:
        db.close()


@pytest.mark.parametrize("grouped", [True, False])
async def test_many_concurrent_writes_all_land(tmp_path: Path, grouped: bool) -> None:
    db = Database(f"sqlite:///{tmp_path}/m.db", group_writes=grouped)
    try:
        db.write_sync(_setup)
        ids = await asyncio.gather(
            *(db.write(lambda c, i=i: _insert(str(i), c)) for i in range(300))
        )
        assert sorted(ids) == list(range(1, 301))
        assert sorted(_values(db), key=int) == [str(i) for i in range(300)]
        assert (db.groups > 0) == grouped
    finally:
        db.close()


def _insert_on_driver(value: str, conn: Connection) -> int:
    return int(driver_execute(conn, "INSERT INTO t (v) VALUES (?)", (value,)).lastrowid)


async def test_a_write_on_the_driver_waits_for_a_lock_held_elsewhere(tmp_path: Path) -> None:
    """A quick write begun and committed on the driver's connection waits its turn on
    the writer thread while another process holds the lock, as any quick write does."""
    db = Database(f"sqlite:///{tmp_path}/d.db")
    try:
        db.write_sync(_setup)
        other = sqlite3.connect(tmp_path / "d.db", isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (v) VALUES ('theirs')")
        threading.Timer(0.3, other.execute, ("COMMIT",)).start()
        await db.write_quick(partial(_insert_on_driver, "ours"), driver=True)
        await db.write_quick(partial(_insert_on_driver, "next"), driver=True)
        assert ["theirs", "ours", "next"] == _values(db)
        other.close()
    finally:
        db.close()


@pytest.mark.parametrize("driver", [True, False], ids=["on_the_driver", "through_sqlalchemy"])
async def test_a_quick_write_that_fails_keeps_nothing(tmp_path: Path, driver: bool) -> None:
    """A statement refused, an error of the caller's, or a commit refused (a deferred
    foreign key): the transaction is rolled back whole, however it was begun, and the
    next quick write goes through (a refused COMMIT left SQLite's transaction open)."""
    db = Database(f"sqlite:///{tmp_path}/r.db")
    try:

        def schema(conn: Connection) -> None:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
            conn.execute(
                text(
                    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES"
                    " t (id) DEFERRABLE INITIALLY DEFERRED)"
                )
            )

        db.write_sync(schema)

        def twice(conn: Connection) -> None:
            _insert_on_driver("a", conn)
            _insert_on_driver("a", conn)

        def then_fail(conn: Connection) -> None:
            _insert_on_driver("b", conn)
            raise ValueError("refused")

        def orphan(conn: Connection) -> None:
            _insert_on_driver("c", conn)
            driver_execute(conn, "INSERT INTO child (parent) VALUES (999)", ())

        with pytest.raises(IntegrityError):
            await db.write_quick(twice, driver=driver)
        with pytest.raises(ValueError, match="refused"):
            await db.write_quick(then_fail, driver=driver)
        with pytest.raises(IntegrityError):
            await db.write_quick(orphan, driver=driver)
        assert [] == _values(db)
        await db.write_quick(partial(_insert_on_driver, "kept"), driver=driver)
        assert ["kept"] == _values(db)
    finally:
        db.close()

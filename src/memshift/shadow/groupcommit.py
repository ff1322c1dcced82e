"""Group commit: many small operations on the state db, one transaction for many of them.

A single flusher takes every operation queued since its last commit, and those queued
in the next few turns of the event loop while they keep coming, and runs them in one
transaction, so that many concurrent requests share one commit. Should one operation
fail, the group is run again with each operation in a savepoint of its own, so that
only that one fails.

An operation that runs its statements on the driver's own connection alone
(``driver_execute``, ``driver=True``) needs none of SQLAlchemy's transaction
machinery: a group of only such operations is committed on the driver directly (on
SQLite: a write's intent, the end of a write, id pairs), which costs a mirrored write
less than the statements themselves.

Clean-up nobody waits for (``post_soon``, and rows of one statement run together with
``post_rows``) does not start a commit of its own: it joins the next commit that has
anything else than new rows in it, or one within ``CLEAN_UP_S``. A commit writes every
page it changed, and clean-up gathered this way changes each page once instead of once
per commit. Whatever is posted after clean-up that is not a new row is committed with
it or after it, never before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection

from memshift.database import Database, driver_executemany

T = TypeVar("T")
log = structlog.get_logger("memshift.shadow")
Op = Callable[[Connection], Any]
# An operation, with its waiter (or its name when nobody waits), whether it only adds
# a new row (one that nothing posted before it needs to be committed with), and
# whether it runs on the driver's connection alone.
_Item = tuple[Op, "asyncio.Future[Any] | str", bool, bool]
_Run = tuple[Op, "asyncio.Future[Any] | str", bool]  # an operation to run: its waiter, driver

CLEAN_UP_S = 0.02  # the longest clean-up waits for a commit that happens anyway
CLEAN_UP_MAX = 500  # or until this many operations wait
GATHER_TURNS = 4  # the most turns of the event loop a commit waits for more operations


def _nothing(_conn: Connection) -> None:
    """An operation that only makes its commit carry the clean-up waiting."""


# Queued only to wake the flusher for clean-up that is due; taken out, never run.
_WAKE: _Item = (_nothing, "clean-up", True, True)


def _run_rows(sql: str, rows: list[tuple[Any, ...]], conn: Connection) -> None:
    driver_executemany(conn, sql, rows)


class GroupCommit:
    """Operations on one database, committed in groups by one flusher."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._later: list[_Run] = []  # clean-up, in the order it was posted
        self._rows: dict[str, list[tuple[Any, ...]]] = {}  # clean-up rows, by statement
        self._timer: asyncio.TimerHandle | None = None  # makes the clean-up due
        self._due = False  # clean-up goes with the next commit, whatever it holds
        self._flushing = False
        # The flusher's loop: asking asyncio for the running loop costs a system call
        # on this Python (a fork check), and every write posts an operation.
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.operations = 0

    async def flusher(self) -> None:
        """Commit queued operations in groups; run for the life of the process."""
        self._flushing = True
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                batch = [await self._queue.get()]
                # Let the requests ready to run queue their operations too: a commit
                # on the event loop is quick, and one commit for more of them is less.
                # A request whose data just arrived needs a few turns of the loop to
                # reach its operation: wait turns while they bring operations, and no
                # longer (a lone client waits one turn).
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
                    if self._queue.empty():
                        break
                    while not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                batch = [item for item in batch if item is not _WAKE]
                clean = bool(self._later or self._rows) and (
                    self._due or not all(alone for _, _, alone, _ in batch)
                )
                items = [(op, waiter, driver) for op, waiter, _, driver in batch]
                if clean:
                    items = self._clean_up() + items  # posted before what follows it
                if items:
                    await self._commit(items)
        finally:
            self._flushing = False
            self._loop = None

    def _clean_up(self) -> list[_Run]:
        items: list[_Run] = list(self._later)
        for sql, rows in self._rows.items():
            items.append((partial(_run_rows, sql, rows), sql.split(" ", 1)[0].lower(), True))
            self.operations += len(rows) - 1  # one statement, one operation per row
        self._later, self._rows, self._due = [], {}, False
        self._stop_timer()
        return items

    def _later_posted(self) -> None:
        if self._due:
            return
        waiting = len(self._later) + sum(len(rows) for rows in self._rows.values())
        if waiting >= CLEAN_UP_MAX:
            self._fall_due()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(CLEAN_UP_S, self._fall_due)

    def _fall_due(self) -> None:
        """Make the clean-up waiting go with the next commit, and wake the flusher for it.

        A flag, not a deadline read off the loop's clock: a timer may fire a hair
        before its time by that clock (uvloop counts in whole milliseconds).
        """
        self._stop_timer()
        self._due = True
        self._queue.put_nowait(_WAKE)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _commit(self, batch: list[_Run]) -> None:
        def together(conn: Connection) -> list[tuple[bool, Any]]:
            return [(True, op(conn)) for op, _, _ in batch]

        def isolated(conn: Connection) -> list[tuple[bool, Any]]:
            out: list[tuple[bool, Any]] = []
            for op, _, _ in batch:
                try:
                    with conn.begin_nested():
                        out.append((True, op(conn)))
                except Exception as exc:
                    out.append((False, exc))
            return out

        try:
            driver = all(on_driver for _, _, on_driver in batch)
            results = await self.db.write_quick(together, driver=driver)
        except Exception:
            try:
                results = await self.db.write(isolated)
            except Exception as exc:
                results = [(False, exc)] * len(batch)
        self.commits += 1
        self.operations += len(batch)
        for (_, waiter, _), (ok, value) in zip(batch, results, strict=True):
            if isinstance(waiter, str):
                if not ok:
                    log.error("group_commit_failed", operation=waiter, exc_info=value)
            elif waiter.done():
                continue
            elif ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)

    def submit(
        self, op: Callable[[Connection], T], *, new_row: bool = False, driver: bool = False
    ) -> Awaitable[T]:
        """Run ``op`` in the next group commit; await its result.

        ``new_row``: ``op`` only adds a new row, which waits for no clean-up. ``driver``:
        it runs its statements with ``driver_execute`` alone (see the module). Without
        a flusher running, ``op`` gets a transaction of its own. The awaitable is the
        commit's own future (no coroutine around it: one frame fewer to resume).
        """
        if not self._flushing:
            return self.db.write(op)
        return self.post(op, new_row=new_row, driver=driver)

    def post_soon(self, op: Callable[[Connection], Any], what: str) -> None:
        """Queue clean-up ``op``: nobody waits, a failure is logged (see the module)."""
        self._later.append((op, what, False))
        self._later_posted()

    def post_rows(self, sql: str, row: tuple[Any, ...]) -> None:
        """Queue clean-up: ``sql`` run for ``row``, with every row queued for it, at once."""
        self._rows.setdefault(sql, []).append(row)
        self._later_posted()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows queued for ``sql`` and not committed yet."""
        return list(self._rows.get(sql, ()))

    def post(
        self, op: Callable[[Connection], T], *, new_row: bool = False, driver: bool = False
    ) -> asyncio.Future[T]:
        """Queue ``op`` for the next group commit now; return its future.

        Operations are committed in the order they were posted (new rows aside).
        """
        future: asyncio.Future[T] = (self._loop or asyncio.get_running_loop()).create_future()
        self._queue.put_nowait((op, future, new_row, driver))
        return future

    async def commit_now(self) -> None:
        """Commit the clean-up posted so far now (before a shutdown, say)."""
        await self.submit(_nothing)

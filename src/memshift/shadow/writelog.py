"""The write-ahead log: every write from before the primary sees it until the secondary has it.

A row is appended (``intent``) and committed before the write is sent to the primary,
with the ``Idempotency-Key`` both stores will see and the caller's user name (never a
token). This class is the only owner of a row's state: every transition below is one
of its methods, and nothing else changes ``writes.state``.

=========  ==========================================  =======================================
state      what it means                               leaves it by (method → next state)
=========  ==========================================  =======================================
intent     logged; the primary may be applying it      ``forget`` → gone (refused, or certainly
           now, in its request's hands                 not sent) · ``unknown`` → unknown ·
                                                       ``end_soon`` → gone (mirrored at once) ·
                                                       ``backlog`` → backlog · ``divergent``
unknown    sent, and the primary's answer was lost:    ``resolved`` → backlog (asked again
           it may have been applied                    under its key) · ``forget`` → gone
                                                       (the primary refused it)
backlog    applied by the primary; the secondary       ``forget`` → gone (replayed) ·
           must take it, in order                      ``divergent`` · ``adopt_in`` → copying
                                                       · ``moot_in`` → copied
copying    backfill is making a copy that will hold    ``copied_in`` → copied ·
           its effect                                  ``restore_in`` → backlog
copied     the copy holds its effect                   ``forget`` → gone (replay drops it)
divergent  the secondary refused it (4xx); kept with   — (an operator's to look at)
           both answers for an operator
accepted   written by earlier versions                 ``recover`` → backlog (at start)
=========  ==========================================  =======================================

An ``intent`` left by a run that died is an orphan: replay resolves it as it resolves
an ``unknown`` write, by sending it to the primary again under its key, as its user;
the primary applies it at most once and answers as it did.

Operations are group-committed: a single flusher takes every operation queued since
its last commit, and those queued in the next few turns of the event loop while they
keep coming, and runs them in one transaction, so that many concurrent writes share
one commit. Should one operation fail, the group is run again with each operation in
a savepoint of its own, so that only that one fails.

Clean-up nobody waits for (the end of a mirrored write, a create's id pair) does not
start a commit of its own: it joins the next commit that has anything else than new
intents in it, or one within ``CLEAN_UP_S``. A commit writes every page it changed,
and clean-up gathered this way changes each page once instead of once per commit.
Whatever is posted after clean-up that is not an intent is committed with it or
after it, never before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy import Connection, func, select, update

from memshift.database import Database, driver_execute, driver_executemany
from memshift.statedb import writes
from memshift.timestamps import now_us

T = TypeVar("T")
log = structlog.get_logger("memshift.shadow")
Op = Callable[[Connection], Any]
# An operation, with its waiter (or its name when nobody waits), and whether it is a
# new intent: a row nothing posted before it needs to be committed with.
_Item = tuple[Op, "asyncio.Future[Any] | str", bool]

CLEAN_UP_S = 0.02  # the longest clean-up waits for a commit that happens anyway
CLEAN_UP_MAX = 500  # or until this many operations wait
GATHER_TURNS = 4  # the most turns of the event loop a commit waits for more operations

INTENT, UNKNOWN, BACKLOG, DIVERGENT = "intent", "unknown", "backlog", "divergent"
ACCEPTED = "accepted"  # written by earlier versions: joins the backlog at start
COPYING, COPIED = "copying", "copied"
LIVE = (INTENT, UNKNOWN, ACCEPTED, BACKLOG)
UNFINISHED = (*LIVE, COPYING, COPIED)
WAITING = (UNKNOWN, BACKLOG, COPYING, COPIED)  # for replay; intent is its request's
UNANSWERED = (INTENT, UNKNOWN)  # the primary's answer is not known here


# On every write: straight to the driver (``driver_execute``).
_COLUMNS = (
    "at",
    "state",
    "idem_key",
    "user",
    "route",
    "method",
    "path",
    "body",
    "record_key",
    "depends",
    "primary_store",
    "attempts",
)
_APPEND = (
    f"INSERT INTO writes ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in _COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)}) RETURNING id"
)
_FORGET = "DELETE FROM writes WHERE id = ?"


@dataclass(frozen=True)
class Answered:
    """The primary's answer to a logged write, and the record it names."""

    record_key: str | None
    status: int
    body: bytes

    def columns(self) -> dict[str, Any]:
        """The write log's columns for it."""
        return {
            "record_key": self.record_key,
            "primary_status": self.status,
            "primary_body": self.body,
        }


@dataclass(frozen=True)
class Entry:
    """A logged write, as replay needs it."""

    id: int
    state: str
    idem_key: str
    user: str
    route: str
    method: str
    path: str
    body: bytes
    record_key: str | None
    depends: tuple[str, ...]
    primary_store: str
    primary_status: int | None
    primary_body: bytes | None
    at: int


def _entry(row: Any) -> Entry:
    return Entry(
        id=row.id,
        state=row.state,
        idem_key=row.idem_key,
        user=row.user,
        route=row.route,
        method=row.method,
        path=row.path,
        body=bytes(row.body),
        record_key=row.record_key,
        depends=tuple(orjson.loads(row.depends)),
        primary_store=row.primary_store,
        primary_status=row.primary_status,
        primary_body=bytes(row.primary_body) if row.primary_body is not None else None,
        at=row.at,
    )


def _nothing(_conn: Connection) -> None:
    """An operation that only makes its commit carry the clean-up waiting."""


# Queued only to wake the flusher for clean-up that is due; taken out, never run.
_WAKE: _Item = (_nothing, "clean-up", True)


def _forget_all(rows: list[tuple[int]], conn: Connection) -> None:
    driver_executemany(conn, _FORGET, rows)


class WriteLog:
    """The ``writes`` table, written through one group-committing flusher."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._later: list[tuple[Op, str]] = []  # clean-up, in the order it was posted
        self._forgets: list[int] = []  # ended writes, deleted together after it
        self._timer: asyncio.TimerHandle | None = None  # makes the clean-up due
        self._due = False  # clean-up goes with the next commit, whatever it holds
        self._flushing = False
        self.commits = 0
        self.operations = 0

    async def flusher(self) -> None:
        """Commit queued operations in groups; run for the life of the log."""
        self._flushing = True
        try:
            while True:
                batch = [await self._queue.get()]
                # Let the requests ready to run queue their operations too: a commit
                # on the event loop is quick, and one commit for more of them is less.
                # A request whose data just arrived needs a few turns of the loop to
                # reach its intent: wait turns while they bring operations, and no
                # longer (a lone client waits one turn).
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
                    if self._queue.empty():
                        break
                    while not self._queue.empty():
                        batch.append(self._queue.get_nowait())
                batch = [item for item in batch if item is not _WAKE]
                clean = bool(self._later or self._forgets) and (
                    self._due or not all(alone for _, _, alone in batch)
                )
                items = [(op, waiter) for op, waiter, _ in batch]
                if clean:
                    items = self._clean_up() + items  # posted before what follows it
                if items:
                    await self._commit(items)
        finally:
            self._flushing = False

    def _clean_up(self) -> list[tuple[Op, asyncio.Future[Any] | str]]:
        items: list[tuple[Op, asyncio.Future[Any] | str]] = list(self._later)
        if self._forgets:
            rows = [(i,) for i in self._forgets]
            items.append((partial(_forget_all, rows), "forget"))
            self.operations += len(rows) - 1  # one statement, one operation per write
        self._later, self._forgets, self._due = [], [], False
        self._stop_timer()
        return items

    def _later_posted(self) -> None:
        if self._due:
            return
        if len(self._later) + len(self._forgets) >= CLEAN_UP_MAX:
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

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any] | str]]) -> None:
        def together(conn: Connection) -> list[tuple[bool, Any]]:
            return [(True, op(conn)) for op, _ in batch]

        def isolated(conn: Connection) -> list[tuple[bool, Any]]:
            out: list[tuple[bool, Any]] = []
            for op, _ in batch:
                try:
                    with conn.begin_nested():
                        out.append((True, op(conn)))
                except Exception as exc:
                    out.append((False, exc))
            return out

        try:
            results = await self.db.write_quick(together)
        except Exception:
            try:
                results = await self.db.write(isolated)
            except Exception as exc:
                results = [(False, exc)] * len(batch)
        self.commits += 1
        self.operations += len(batch)
        for (_, waiter), (ok, value) in zip(batch, results, strict=True):
            if isinstance(waiter, str):
                if not ok:
                    log.error("write_log_operation_failed", operation=waiter, error=repr(value))
            elif waiter.done():
                continue
            elif ok:
                waiter.set_result(value)
            else:
                waiter.set_exception(value)

    async def submit(self, op: Callable[[Connection], T], *, intent: bool = False) -> T:
        """Run ``op`` in the next group commit and return its result.

        ``intent``: ``op`` only adds a new intent, which waits for no clean-up.
        """
        if not self._flushing:
            return await self.db.write(op)
        return await self.post(op, intent=intent)

    def post_soon(self, op: Callable[[Connection], Any], what: str) -> None:
        """Queue clean-up ``op``: nobody waits, a failure is logged (see the module)."""
        self._later.append((op, what))
        self._later_posted()

    def post(self, op: Callable[[Connection], T], *, intent: bool = False) -> asyncio.Future[T]:
        """Queue ``op`` for the next group commit now; return its future.

        Operations are committed in the order they were posted (new intents aside).
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future, intent))
        return future

    async def commit_now(self) -> None:
        """Commit the clean-up posted so far now (before a shutdown, say)."""
        await self.submit(_nothing)

    async def intent(
        self,
        *,
        idem_key: str,
        user: str,
        route: str,
        method: str,
        path: str,
        body: bytes,
        record_key: str | None,
        depends: tuple[str, ...],
        primary: str,
    ) -> int:
        """Log a write before it is sent to the primary; return its id."""
        values = (
            now_us(),
            INTENT,
            idem_key,
            user,
            route,
            method,
            path,
            body,
            record_key,
            orjson.dumps(list(depends)).decode(),
            primary,
            0,
        )

        def op(conn: Connection) -> int:
            return int(driver_execute(conn, _APPEND, values).fetchone()[0])

        return await self.submit(op, intent=True)

    async def unknown(self, entry_id: int, error: str) -> None:
        """The primary's answer to a write was lost: replay asks it again under its key."""
        await self._set(entry_id, state=UNKNOWN, error=error)

    async def resolved(self, entry_id: int, answered: Answered) -> None:
        """Record the answer of a write re-sent to the primary; it waits for replay."""
        await self._set(entry_id, state=BACKLOG, **answered.columns())

    async def backlog(self, entry_id: int, error: str, answered: Answered | None = None) -> None:
        """Keep a write the secondary did not take, for replay in order.

        ``answered``: the primary's answer, for a write whose answer is not logged yet.
        """
        await self._set(
            entry_id,
            state=BACKLOG,
            error=error,
            attempts=writes.c.attempts + 1,
            **(answered.columns() if answered else {}),
        )

    async def divergent(
        self,
        entry_id: int,
        status: int | None,
        body: bytes,
        error: str,
        answered: Answered | None = None,
    ) -> None:
        """Keep a write the secondary refused, with both answers."""
        await self._set(
            entry_id,
            state=DIVERGENT,
            secondary_status=status,
            secondary_body=body,
            error=error,
            **(answered.columns() if answered else {}),
        )

    async def _set(self, entry_id: int, **values: Any) -> None:
        # Only a write still in memshift's hands: never one backfill took over.
        await self.submit(
            lambda conn: conn.execute(
                update(writes)
                .where(writes.c.id == entry_id, writes.c.state.in_(LIVE))
                .values(**values)
            )
        )

    async def state_of(self, entry_id: int) -> str | None:
        """Return the state of one write now; None once it is gone."""
        return await self.db.read(
            lambda conn: conn.execute(
                select(writes.c.state).where(writes.c.id == entry_id)
            ).scalar_one_or_none()
        )

    def end_soon(self, entry_id: int) -> None:
        """Queue the end of a write that is done; the caller does not wait for the commit.

        Clean-up (see the module): ended writes are deleted together, after the other
        clean-up. Safe to lose in a crash: the write is then replayed, and its
        ``Idempotency-Key`` makes the secondary answer as before without applying it.
        """
        self._forgets.append(entry_id)
        self._later_posted()

    async def forget(self, entry_id: int) -> None:
        """Drop a write that is done: mirrored, or never applied by the primary."""
        await self.submit(lambda conn: driver_execute(conn, _FORGET, (entry_id,)))

    async def unfinished(self, after: int = 0, limit: int = 500) -> list[Entry]:
        """Return unfinished writes (live ones, and those backfill took over) in log order."""
        rows = await self.db.read(
            lambda conn: conn.execute(
                select(writes)
                .where(writes.c.state.in_(UNFINISHED), writes.c.id > after)
                .order_by(writes.c.id)
                .limit(limit)
            ).all()
        )
        return [_entry(r) for r in rows]

    async def replayable(self) -> bool:
        """Whether any write waits for replay (backlog, or one backfill took over)."""
        return await self.db.read(
            lambda conn: (
                conn.execute(
                    select(writes.c.id).where(writes.c.state.in_(WAITING)).limit(1)
                ).first()
                is not None
            )
        )

    async def recover(self) -> int:
        """After a restart: every accepted write not known mirrored joins the backlog."""
        return int(
            await self.submit(
                lambda conn: (
                    conn.execute(
                        update(writes).where(writes.c.state == ACCEPTED).values(state=BACKLOG)
                    ).rowcount
                )
            )
        )

    async def figures(self) -> dict[str, int]:
        """Return backlog size, divergent count and the oldest backlog entry's time.

        Writes that ended here, whose rows wait for their clean-up, are not counted.
        """
        ended = list(self._forgets)

        def read(conn: Connection) -> dict[str, int]:
            query = select(writes.c.state, func.count(), func.min(writes.c.at))
            if ended:
                query = query.where(writes.c.id.not_in(ended))
            rows = conn.execute(query.group_by(writes.c.state)).all()
            by = {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}
            waiting = [by[s] for s in (INTENT, UNKNOWN, BACKLOG, COPYING) if s in by]
            return {
                "backlog": sum(n for n, _ in waiting),
                "divergent": by.get(DIVERGENT, (0, 0))[0],
                "oldest_at": min((at for _, at in waiting), default=0),
            }

        return await self.db.read(read)

    # Transitions backfill and repair make inside their own transactions (with a copy
    # plan and an id pair): each moves every write it names, or raises ``Moved``.

    @staticmethod
    def adopt_in(conn: Connection, ids: tuple[int, ...]) -> None:
        """backlog → copying: a copy being made will hold their effect."""
        _take(conn, ids, BACKLOG, COPYING)

    @staticmethod
    def copied_in(conn: Connection, ids: tuple[int, ...]) -> None:
        """copying → copied: the copy that holds their effect is made."""
        _take(conn, ids, COPYING, COPIED)

    @staticmethod
    def restore_in(conn: Connection, ids: tuple[int, ...]) -> None:
        """copying → backlog: the copy was refused; replay applies them after all."""
        _take(conn, ids, COPYING, BACKLOG)

    @staticmethod
    def moot_in(conn: Connection, ids: tuple[int, ...]) -> None:
        """backlog → copied: their record is gone from both stores; nothing to apply."""
        _take(conn, ids, BACKLOG, COPIED)


class Moved(Exception):
    """Writes a transition names are no longer in the state it expects (someone moved them)."""


def _take(conn: Connection, ids: tuple[int, ...], source: str, target: str) -> None:
    """Move all of ``ids`` from ``source`` to ``target``, or raise ``Moved``."""
    if not ids:
        return
    moved = conn.execute(
        update(writes).where(writes.c.id.in_(ids), writes.c.state == source).values(state=target)
    ).rowcount
    if moved != len(ids):
        raise Moved(f"{len(ids) - moved} of {len(ids)} write(s) are no longer {source}")

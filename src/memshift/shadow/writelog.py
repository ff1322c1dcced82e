"""The write-ahead log: every write from before the primary sees it until the secondary has it.

A row is appended (``intent``) and committed before the write is sent to the primary,
with the ``Idempotency-Key`` both stores will see and the caller's user name (never
a token). The primary's answer makes it ``accepted``; the secondary's completion
deletes it. A write the secondary could not take yet is ``backlog``, replayed in
order; one it refused (4xx) is ``divergent``, kept with both answers for an operator.
After a crash, ``intent`` rows are re-sent to the primary under their key (applied at
most once) and everything not yet mirrored is replayed.

Backfill may take over backlog writes of a record that has no copy yet: when the copy
it makes already holds their effect, it marks them ``copying`` and then ``copied``,
which replay forgets instead of applying them twice.

Operations are group-committed: a single flusher takes every operation queued since
its last commit and runs them in one transaction, so that many concurrent writes share
one commit. Should one operation fail, the group is run again with each operation in
a savepoint of its own, so that only that one fails.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import structlog
from sqlalchemy import Connection, func, select, update

from memshift.database import Database, driver_execute
from memshift.statedb import writes
from memshift.timestamps import now_us

T = TypeVar("T")
log = structlog.get_logger("memshift.shadow")
Op = Callable[[Connection], Any]

INTENT, ACCEPTED, BACKLOG, DIVERGENT = "intent", "accepted", "backlog", "divergent"
COPYING, COPIED = "copying", "copied"
LIVE = (INTENT, ACCEPTED, BACKLOG)
UNFINISHED = (*LIVE, COPYING, COPIED)
WAITING = (BACKLOG, COPYING, COPIED)  # for replay; intent and accepted are their requests'


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
_ACCEPT = (
    'UPDATE writes SET "state" = ?, "record_key" = ?, "primary_status" = ?, '
    '"primary_body" = ? WHERE id = ?'
)
_FORGET = "DELETE FROM writes WHERE id = ?"


def _log_failure(what: str, done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.error("write_log_operation_failed", operation=what, error=repr(done.exception()))


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


class WriteLog:
    """The ``writes`` table, written through one group-committing flusher."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queue: asyncio.Queue[tuple[Op, asyncio.Future[Any]]] = asyncio.Queue()
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
                await asyncio.sleep(0)
                while not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                await self._commit(batch)
        finally:
            self._flushing = False

    async def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> None:
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
        for (_, future), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    async def submit(self, op: Callable[[Connection], T]) -> T:
        """Run ``op`` in the next group commit and return its result."""
        if not self._flushing:
            return await self.db.write(op)
        return await self.post(op)

    def post_soon(self, op: Callable[[Connection], Any], what: str) -> None:
        """Queue ``op`` for the next group commit; nobody waits, a failure is logged."""
        self.post(op).add_done_callback(functools.partial(_log_failure, what))

    def post(self, op: Callable[[Connection], T]) -> asyncio.Future[T]:
        """Queue ``op`` for the next group commit now; return its future.

        Operations are committed in the order they were posted.
        """
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return future

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

        return await self.submit(op)

    async def accepted(
        self, entry_id: int, record_key: str | None, status: int, body: bytes
    ) -> None:
        """Record the primary's answer to a write it accepted."""
        await self._set(
            entry_id,
            state=ACCEPTED,
            record_key=record_key,
            primary_status=status,
            primary_body=body,
        )

    def post_accepted(
        self, entry_id: int, record_key: str | None, status: int, body: bytes
    ) -> None:
        """Queue the primary's answer now, ahead of anything queued later for the write."""
        values = (ACCEPTED, record_key, status, body, entry_id)
        self.post_soon(lambda conn: driver_execute(conn, _ACCEPT, values), "accepted")

    async def backlog(self, entry_id: int, error: str) -> None:
        """Keep a write the secondary did not take, for replay in order."""
        await self._set(entry_id, state=BACKLOG, error=error, attempts=writes.c.attempts + 1)

    async def divergent(self, entry_id: int, status: int | None, body: bytes, error: str) -> None:
        """Keep a write the secondary refused, with both answers."""
        await self._set(
            entry_id, state=DIVERGENT, secondary_status=status, secondary_body=body, error=error
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

    def forget_soon(self, entry_id: int) -> None:
        """Queue the end of a write that is done; the caller does not wait for the commit.

        Safe to lose in a crash: the write is then replayed, and its
        ``Idempotency-Key`` makes the secondary answer as before without applying it.
        """
        self.post_soon(lambda conn: driver_execute(conn, _FORGET, (entry_id,)), "forget")

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

    async def mark_backlog(self) -> int:
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
        """Return backlog size, divergent count and the oldest backlog entry's time."""

        def read(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                select(writes.c.state, func.count(), func.min(writes.c.at)).group_by(writes.c.state)
            ).all()
            by = {r[0]: (int(r[1]), int(r[2] or 0)) for r in rows}
            waiting = [by[s] for s in (INTENT, BACKLOG, COPYING) if s in by]
            return {
                "backlog": sum(n for n, _ in waiting),
                "divergent": by.get(DIVERGENT, (0, 0))[0],
                "oldest_at": min((at for _, at in waiting), default=0),
            }

        return await self.db.read(read)

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
                                                       (the primary refused it) · ``held``
backlog    applied by the primary; the secondary       ``forget`` → gone (replayed) ·
           must take it, in order                      ``divergent`` · ``adopt_in`` → copying
                                                       · ``moot_in`` → copied
copying    backfill is making a copy that will hold    ``copied_in`` → copied ·
           its effect                                  ``restore_in`` → backlog
copied     the copy holds its effect                   ``forget`` → gone (replay drops it)
divergent  the secondary refused it (4xx); kept with   ``copied_over`` → gone (a copy made in
           both answers for an operator                a quiet spell holds its effect)
held       sent, its answer lost, to a store that     ``release_held`` → gone (``verify
           must not get it twice: it blocks its        --repair`` made the records agree) ·
           records until a repair settles them         ``forget`` → gone (read back: applied)
                                                       · ``unheld`` → backlog (read back: not
                                                       applied)
accepted   written by earlier versions                 ``recover`` → backlog (at start)
=========  ==========================================  =======================================

An ``intent`` left by a run that died is an orphan: replay resolves it as it resolves
an ``unknown`` write, by sending it to the primary again under its key, as its user;
the primary applies it at most once and answers as it did.

Its operations are group-committed (``groupcommit.py``): many concurrent writes share
one commit, and the end of a mirrored write is clean-up that rides along with a later
commit.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import structlog
from sqlalchemy import Connection, and_, delete, func, or_, select, update

from memshift.database import Database, driver_execute
from memshift.shadow.groupcommit import GroupCommit
from memshift.shadow.records import GLOBAL
from memshift.statedb import writes
from memshift.timestamps import now_us

log = structlog.get_logger("memshift.shadow")

INTENT, UNKNOWN, BACKLOG, DIVERGENT = "intent", "unknown", "backlog", "divergent"
HELD = "held"
ACCEPTED = "accepted"  # written by earlier versions: joins the backlog at start
COPYING, COPIED = "copying", "copied"
LIVE = (INTENT, UNKNOWN, ACCEPTED, BACKLOG)
UNFINISHED = (*LIVE, COPYING, COPIED, HELD)
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
    "touches",
    "depends",
    "primary_store",
    "attempts",
    "instance",
)
_INSERT = (
    f"INSERT INTO writes ({', '.join(f'{chr(34)}{c}{chr(34)}' for c in _COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)
# SQLite gives the new row's id as the connection's last one (a third cheaper than
# RETURNING, which collects its rows in a table of its own first); PostgreSQL says it.
_APPEND = f"{_INSERT} RETURNING id"
_FORGET = "DELETE FROM writes WHERE id = ?"


def _appended(values: tuple[Any, ...], conn: Connection) -> int:
    return int(driver_execute(conn, _APPEND, values).fetchone()[0])


def _appended_sqlite(values: tuple[Any, ...], conn: Connection) -> int:
    return int(driver_execute(conn, _INSERT, values).lastrowid)


@dataclass(slots=True)
class Answered:
    """The primary's answer to a logged write, and the records it changed."""

    keys: tuple[str, ...]
    status: int
    body: bytes

    def columns(self) -> dict[str, Any]:
        """The write log's columns for it."""
        return {**_keys(self.keys), "primary_status": self.status, "primary_body": self.body}


def _keys(keys: tuple[str, ...]) -> dict[str, Any]:
    """The columns naming the records a write changes: ``record_key`` for lookups (its
    one record; ``*`` for a write of several or of unknown ones, which other instances
    order every write behind), and ``touches``, all of them."""
    return {
        "record_key": (keys[0] if len(keys) == 1 else GLOBAL) if keys else None,
        "touches": orjson.dumps(list(keys)).decode() if keys else None,
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
    keys: tuple[str, ...]  # the records it changes (none known: a create not answered)
    depends: tuple[str, ...]
    primary_store: str
    primary_status: int | None
    primary_body: bytes | None
    at: int
    instance: str | None = None


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
        keys=(
            tuple(orjson.loads(row.touches))
            if row.touches
            else ((row.record_key,) if row.record_key else ())
        ),
        depends=tuple(orjson.loads(row.depends)),
        primary_store=row.primary_store,
        primary_status=row.primary_status,
        primary_body=bytes(row.primary_body) if row.primary_body is not None else None,
        at=row.at,
        instance=row.instance,
    )


class WriteLog:
    """The ``writes`` table: the only owner of a write's state (see the module)."""

    def __init__(self, db: Database, group: GroupCommit | None = None) -> None:
        """``group``: the group commit its operations join (the proxy's); without one,
        each operation is a transaction of its own (migrate, tests)."""
        self.db = db
        self.group = group or GroupCommit(db)

    def intent(
        self,
        *,
        idem_key: str,
        user: str,
        route: str,
        method: str,
        path: str,
        body: bytes,
        keys: tuple[str, ...],
        depends: tuple[str, ...],
        primary: str,
        instance: str | None = None,
    ) -> Awaitable[int]:
        """Log a write before it is sent to the primary; await its id.

        ``keys``: the records it changes, as far as they are known before the answer.
        """
        columns = _keys(keys)
        values = (
            now_us(),
            INTENT,
            idem_key,
            user,
            route,
            method,
            path,
            body,
            columns["record_key"],
            columns["touches"],
            orjson.dumps(list(depends)).decode(),
            primary,
            0,
            instance,
        )

        append = _appended_sqlite if self.db.is_sqlite else _appended
        return self.group.submit(partial(append, values), new_row=True, driver=True)

    async def unknown(self, entry_id: int, error: str) -> None:
        """The primary's answer to a write was lost: replay asks it again under its key."""
        await self._set(entry_id, state=UNKNOWN, error=error)

    async def held(self, entry_id: int, error: str, answered: Answered | None = None) -> None:
        """Keep a write whose outcome is unknown on a store that must not get it twice."""
        await self._set(
            entry_id, state=HELD, error=error, **(answered.columns() if answered else {})
        )

    async def unheld(self, entry_id: int) -> None:
        """A held write that reading back found not applied: replay sends it."""
        await self.group.submit(
            lambda conn: conn.execute(
                update(writes)
                .where(writes.c.id == entry_id, writes.c.state == HELD)
                .values(state=BACKLOG, error="read back: not applied")
            )
        )

    async def copied_over(self, keys: tuple[str, ...]) -> int:
        """Drop divergent writes of records a copy made while the stores were quiet: it
        holds their effect (they were refused because the record was not there yet)."""
        if not keys:
            return 0
        return int(
            await self.group.submit(
                lambda conn: (
                    conn.execute(
                        delete(writes).where(
                            writes.c.state == DIVERGENT, writes.c.record_key.in_(list(keys))
                        )
                    ).rowcount
                )
            )
        )

    async def release_held(self) -> int:
        """Drop every held write (a repair made their records agree); return how many."""
        return int(
            await self.group.submit(
                lambda conn: conn.execute(delete(writes).where(writes.c.state == HELD)).rowcount
            )
        )

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
        await self.group.submit(
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
        self.group.post_rows(_FORGET, (entry_id,))

    async def forget(self, entry_id: int) -> None:
        """Drop a write that is done: mirrored, or never applied by the primary."""
        await self.group.submit(
            lambda conn: driver_execute(conn, _FORGET, (entry_id,)), driver=True
        )

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

    async def entries(self, ids: list[int]) -> list[Entry]:
        """The writes ``ids`` that are still in the log, in log order."""
        rows = await self.db.read(
            lambda conn: conn.execute(
                select(writes).where(writes.c.id.in_(ids)).order_by(writes.c.id)
            ).all()
        )
        return [_entry(r) for r in rows]

    async def unfinished_of(self, keys: list[str]) -> list[tuple[int, str, str | None, str, str]]:
        """Unfinished writes of the records ``keys``, and every one whose record is not
        known yet (an unanswered create): id, state, record key, method and path."""

        def read(conn: Connection) -> list[tuple[int, str, str | None, str, str]]:
            rows = conn.execute(
                select(
                    writes.c.id, writes.c.state, writes.c.record_key, writes.c.method, writes.c.path
                )
                .where(
                    writes.c.state.in_(UNFINISHED),
                    or_(
                        writes.c.record_key.in_(keys),
                        and_(writes.c.record_key.is_(None), writes.c.state.in_(UNANSWERED)),
                    ),
                )
                .order_by(writes.c.id)
            ).all()
            return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

        return await self.db.read(read)

    async def backlog_keys(self) -> list[str]:
        """Return the records that have writes in the backlog."""
        return await self.db.read(
            lambda conn: list(
                conn.execute(
                    select(writes.c.record_key)
                    .where(writes.c.state == BACKLOG, writes.c.record_key.is_not(None))
                    .distinct()
                ).scalars()
            )
        )

    async def earlier(
        self, entry_id: int, keys: tuple[str, ...], states: tuple[str, ...]
    ) -> list[str | None]:
        """The instances of the writes logged before ``entry_id``, in ``states``, that a
        write changing ``keys`` must come after (for ordering across instances)."""
        c = writes.c
        query = select(c.instance).where(c.id < entry_id, c.state.in_(states))
        if keys and GLOBAL not in keys:
            query = query.where(c.record_key.in_([*keys, GLOBAL]))
        elif not keys:  # a create: behind writes of unknown records only
            query = query.where(c.record_key == GLOBAL)
        return await self.db.read(lambda conn: list(conn.execute(query).scalars()))

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
            await self.group.submit(
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
        ended = [row[0] for row in self.group.rows(_FORGET)]

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
                "held": by.get(HELD, (0, 0))[0],
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

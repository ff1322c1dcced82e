"""The other proxy instances sharing this one's state db, and whether they are alive.

Each instance says every second that it is alive (``instances`` in the state db) and
reads who else is. With no other instance alive, this one orders writes by itself
(its lanes); with others (``shared``), writes to one record must also be ordered
across instances through the shared write log (``proxy/writes.py``).

An instance that starts while others run serves reads at once, and waits before its
first writes until each of them has seen it (``ready``): by then each orders its own
writes across instances too. An instance silent for
``DEAD_AFTER_S`` is dead: its writes still in flight are orphans, for replay.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, update

from memshift.database import Database
from memshift.statedb import instances
from memshift.timestamps import now_us

BEAT_EVERY_S = 1.0
DEAD_AFTER_S = 10.0
READY_WITHIN_S = 5.0


@dataclass(frozen=True)
class Peer:
    """Another instance, as the state db last saw it."""

    name: str
    started_at: int
    beat_at: int


class Peers:
    """This instance's view of the others sharing its state db."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.started_at = now_us()
        self.alive: dict[str, Peer] = {}  # other instances, alive
        self.arrived_at: int | None = None  # when this instance's first beat was stored
        self._ready = asyncio.Event()

    @property
    def shared(self) -> bool:
        """Whether another instance is alive: writes are ordered across instances."""
        return bool(self.alive)

    def is_alive(self, name: str | None) -> bool:
        """Whether the instance ``name`` (this one included) is alive."""
        return name == self.name or name in self.alive

    async def beat(self) -> None:
        """Say this instance is alive; learn which others are."""
        now = now_us()
        found = await self.db.write(lambda conn: _beat(conn, self.name, self.started_at, now))
        if self.arrived_at is None:
            self.arrived_at = now_us()
        cutoff = now - int(DEAD_AFTER_S * 1_000_000)
        self.alive = {p.name: p for p in found if p.name != self.name and p.beat_at >= cutoff}
        # A peer has seen this instance once it beat a full beat after this one arrived,
        # or if it started after this one arrived (its first beat read this one's row).
        seen = self.arrived_at + int(BEAT_EVERY_S * 1_000_000)
        if all(p.beat_at >= seen or p.started_at > self.arrived_at for p in self.alive.values()):
            self._ready.set()

    async def ready(self) -> None:
        """Return once every other instance alive has seen this one (or after
        ``READY_WITHIN_S``): from then on they order writes with it."""
        if self._ready.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_WITHIN_S):
                await self._ready.wait()
        self._ready.set()

    async def leave(self) -> None:
        """Say this instance is gone (a clean stop)."""
        await self.db.write(
            lambda conn: conn.execute(delete(instances).where(instances.c.name == self.name))
        )


def _beat(conn: Connection, name: str, started_at: int, now: int) -> list[Peer]:
    done = conn.execute(
        update(instances).where(instances.c.name == name).values(beat_at=now, started_at=started_at)
    )
    if not done.rowcount:
        conn.execute(insert(instances).values(name=name, started_at=started_at, beat_at=now))
    rows = conn.execute(select(instances)).all()
    return [Peer(r.name, r.started_at, r.beat_at) for r in rows]

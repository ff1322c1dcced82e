"""Mirrored writes the secondary did not take, kept in the state db for repair.

An entry holds what is needed to apply the write later (route, method, the client's
path and body with client-side ids) and why it failed; never a client's token.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select

from memshift.database import Database
from memshift.statedb import mirror_failures
from memshift.timestamps import now_us


@dataclass(frozen=True)
class Failure:
    """One mirrored write that did not reach the secondary."""

    store: str
    route: str
    method: str
    path: str
    body: bytes
    status: int | None
    error: str


class FailureLog:
    """The failures kept for repair."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, failure: Failure) -> None:
        """Keep ``failure``."""

        def write(conn: Connection) -> None:
            conn.execute(insert(mirror_failures).values(at=now_us(), **failure.__dict__))

        await self.db.write(write)

    async def count(self) -> int:
        """Return how many failures are kept."""

        def read(conn: Connection) -> int:
            query = select(func.count()).select_from(mirror_failures)
            return int(conn.execute(query).scalar_one())

        return await self.db.read(read)

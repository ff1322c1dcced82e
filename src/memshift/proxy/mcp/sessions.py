"""The proxy's MCP sessions: one id for the client, one session per store behind it.

A 2025-era client initializes once and gets an ``Mcp-Session-Id`` minted by the
proxy; behind it each store has its own session id and negotiated version, opened by
the proxy with the client's own ``initialize``. A store's session that expired is
opened again from that same request. Sessions idle longer than ``idle_s`` are
forgotten (the client then gets 404 and initializes again, as the protocol says).

Sessions are kept in the state db as well as in memory, so that any instance or
worker sharing the state db serves a client whose next connection lands on it. A
copy in memory is trusted as it is; when another instance re-opened a store session
meanwhile, the store's 404 makes this one re-open it too.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from memshift.config.settings import StoreName
from memshift.database import Database
from memshift.links.mcp import StoreSession
from memshift.statedb import mcp_sessions
from memshift.timestamps import now_us

IDLE_S = 30 * 60.0
LIMIT = 10_000
TOUCH_EVERY_S = 60.0  # how often a session in use refreshes its time in the state db


@dataclass
class ClientSession:
    """One client's session and the store sessions behind it."""

    id: str
    init: dict[str, Any]
    stores: dict[StoreName, StoreSession | None]
    initialized: bool = False
    last_used: float = field(default_factory=time.monotonic)
    touched: float = field(default_factory=time.monotonic)
    locks: dict[StoreName, asyncio.Lock] = field(
        default_factory=lambda: {"legacy": asyncio.Lock(), "new": asyncio.Lock()}
    )

    def document(self) -> str:
        """What the state db keeps of it."""
        stores = {
            name: None if s is None else {"id": s.id, "version": s.version}
            for name, s in self.stores.items()
        }
        return orjson.dumps(
            {"init": self.init, "stores": stores, "initialized": self.initialized}
        ).decode()

    @classmethod
    def of_document(cls, session_id: str, data: str) -> ClientSession:
        """The session a state-db document describes."""
        doc = orjson.loads(data)
        stores: dict[StoreName, StoreSession | None] = {
            name: None if s is None else StoreSession(s["id"], s["version"])
            for name, s in doc["stores"].items()
        }
        return cls(session_id, doc["init"], stores, initialized=bool(doc["initialized"]))


class Sessions:
    """The client sessions of one proxy instance, shared through the state db if given."""

    def __init__(
        self, idle_s: float = IDLE_S, limit: int = LIMIT, db: Database | None = None
    ) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self.db = db
        self._by_id: dict[str, ClientSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    async def mint(
        self, init: dict[str, Any], stores: dict[StoreName, StoreSession | None]
    ) -> ClientSession:
        """Return a new session for a client's ``initialize``; forget idle ones first."""
        await self.expire()
        if len(self._by_id) >= self.limit:
            oldest = min(self._by_id.values(), key=lambda s: s.last_used)
            self._by_id.pop(oldest.id, None)
        session = ClientSession(secrets.token_hex(16), init, stores)
        self._by_id[session.id] = session
        if self.db is not None:
            row = {"id": session.id, "data": session.document(), "last_used": now_us()}
            await self.db.write(lambda conn: conn.execute(insert(mcp_sessions).values(**row)))
        return session

    async def get(self, session_id: str) -> ClientSession | None:
        """Return the live session ``session_id`` names, marking it used."""
        session = self._by_id.get(session_id)
        now = time.monotonic()
        if session is None and self.db is not None:
            session = await self._load(session_id)
        if session is None:
            return None
        if now - session.last_used > self.idle_s:
            await self.drop(session_id)
            return None
        session.last_used = now
        if self.db is not None and now - session.touched > TOUCH_EVERY_S:
            session.touched = now
            await self.db.write(
                lambda conn: conn.execute(
                    update(mcp_sessions)
                    .where(mcp_sessions.c.id == session_id)
                    .values(last_used=now_us())
                )
            )
        return session

    async def _load(self, session_id: str) -> ClientSession | None:
        assert self.db is not None
        cutoff = now_us() - int(self.idle_s * 1_000_000)

        def read(conn: Connection) -> Any:
            return conn.execute(
                select(mcp_sessions.c.data).where(
                    mcp_sessions.c.id == session_id, mcp_sessions.c.last_used >= cutoff
                )
            ).scalar_one_or_none()

        data = await self.db.read(read)
        if data is None:
            return None
        session = ClientSession.of_document(session_id, data)
        self._by_id[session_id] = session
        return session

    async def changed(self, session: ClientSession) -> None:
        """Keep what changed in ``session`` (a store session, the initialized flag)."""
        if self.db is None:
            return
        values = {"data": session.document(), "last_used": now_us()}
        await self.db.write(
            lambda conn: conn.execute(
                update(mcp_sessions).where(mcp_sessions.c.id == session.id).values(**values)
            )
        )

    async def drop(self, session_id: str) -> ClientSession | None:
        """Forget a session (the client ended it, or it went idle)."""
        session = self._by_id.pop(session_id, None)
        if self.db is not None:
            await self.db.write(
                lambda conn: conn.execute(
                    delete(mcp_sessions).where(mcp_sessions.c.id == session_id)
                )
            )
        return session

    async def expire(self) -> None:
        """Forget the sessions idle longer than ``idle_s``, here and in the state db."""
        cutoff = time.monotonic() - self.idle_s
        for sid in [s.id for s in self._by_id.values() if s.last_used < cutoff]:
            self._by_id.pop(sid, None)
        if self.db is not None:
            stale = now_us() - int(self.idle_s * 1_000_000)
            await self.db.write(
                lambda conn: conn.execute(
                    delete(mcp_sessions).where(mcp_sessions.c.last_used < stale)
                )
            )

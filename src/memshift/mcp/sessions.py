"""The proxy's MCP sessions: one id for the client, one session per store behind it.

A 2025-era client initializes once and gets an ``Mcp-Session-Id`` minted by the
proxy; behind it each store has its own session id and negotiated version, opened by
the proxy with the client's own ``initialize``. A store's session that expired is
opened again from that same request. Sessions idle longer than ``idle_s`` are
forgotten (the client then gets 404 and initializes again, as the protocol says).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from memshift.config.settings import StoreName
from memshift.mcp.link import StoreSession

IDLE_S = 30 * 60.0
LIMIT = 10_000


@dataclass
class ClientSession:
    """One client's session and the store sessions behind it."""

    id: str
    init: dict[str, Any]
    stores: dict[StoreName, StoreSession | None]
    initialized: bool = False
    last_used: float = field(default_factory=time.monotonic)
    locks: dict[StoreName, asyncio.Lock] = field(
        default_factory=lambda: {"legacy": asyncio.Lock(), "new": asyncio.Lock()}
    )


class Sessions:
    """The client sessions of one proxy instance."""

    def __init__(self, idle_s: float = IDLE_S, limit: int = LIMIT) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self._by_id: dict[str, ClientSession] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def mint(
        self, init: dict[str, Any], stores: dict[StoreName, StoreSession | None]
    ) -> ClientSession:
        """Return a new session for a client's ``initialize``; forget idle ones first."""
        self.expire()
        if len(self._by_id) >= self.limit:
            oldest = min(self._by_id.values(), key=lambda s: s.last_used)
            self._by_id.pop(oldest.id, None)
        session = ClientSession(secrets.token_hex(16), init, stores)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str) -> ClientSession | None:
        """Return the live session ``session_id`` names, marking it used."""
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if now - session.last_used > self.idle_s:
            self._by_id.pop(session_id, None)
            return None
        session.last_used = now
        return session

    def drop(self, session_id: str) -> ClientSession | None:
        """Forget a session (the client ended it)."""
        return self._by_id.pop(session_id, None)

    def expire(self) -> None:
        """Forget the sessions idle longer than ``idle_s``."""
        cutoff = time.monotonic() - self.idle_s
        for sid in [s.id for s in self._by_id.values() if s.last_used < cutoff]:
            self._by_id.pop(sid, None)

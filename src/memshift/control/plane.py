"""The control plane of one proxy instance: the state it obeys, kept current.

The state is read from memory on the request path and changed only through the state
db, so every instance sharing that database converges on the newest epoch: ``refresh``
adopts what another instance wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from memshift.config.settings import RoutingSettings
from memshift.control.state import (
    Conflict,
    ControlState,
    apply_file,
    audit_entries,
    change_state,
    read_state,
    start_state,
)
from memshift.database import Database
from memshift.timestamps import now_us

log = structlog.get_logger("memshift.control")
ATTEMPTS = 8


Listener = Callable[[ControlState, ControlState], None]


class ControlPlane:
    """The current ``ControlState`` and the ways to change it.

    ``listeners`` are told of every change adopted after start (old state, new state),
    whichever instance made it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.state = ControlState(
            primary="legacy", read_percent=0, shadow_read_percent=0, write_mode="sync"
        )
        self.listeners: list[Listener] = []

    def _adopt(self, state: ControlState, source: str) -> ControlState:
        old = self.state
        if state.epoch != old.epoch and source != "start":
            for listener in self.listeners:
                listener(old, state)
        if state.epoch != old.epoch:
            log.info(
                "control_changed",
                source=source,
                epoch=state.epoch,
                primary=state.primary,
                read_percent=state.read_percent,
                shadow_read_percent=state.shadow_read_percent,
                write_mode=state.write_mode,
                failed_back=state.failed_back,
            )
        self.state = state
        return state

    async def _write(self, change: Callable[[Connection], ControlState]) -> ControlState:
        """Run ``change`` in a write transaction; on a conflict, read again and retry."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self.db.write(change)
            except (Conflict, DBAPIError) as exc:
                # Another instance changed the state (or made the row) at the same time.
                if attempt == ATTEMPTS:
                    raise Conflict(f"gave up after {ATTEMPTS} conflicting changes") from exc
                await asyncio.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    async def start(self, routing: RoutingSettings) -> ControlState:
        """Load the shared state, applying what changed in the file since it was last read."""
        state = await self._write(lambda conn: start_state(conn, routing, now_us()))
        return self._adopt(state, "start")

    async def change(
        self, changes: dict[str, Any], *, source: str, reason: str | None = None
    ) -> ControlState:
        """Apply operator ``changes``; return the new state. Raise ``Conflict`` when
        other instances kept changing it meanwhile."""
        state = await self._write(
            lambda conn: change_state(conn, changes, source=source, reason=reason, now=now_us())
        )
        return self._adopt(state, source)

    async def apply_file(self, routing: RoutingSettings) -> ControlState:
        """Apply the routing values that changed in the config file."""
        state = await self._write(lambda conn: apply_file(conn, routing, now_us()))
        return self._adopt(state, "file")

    async def failback(self, reason: str, *, source: str) -> ControlState:
        """Send every read to legacy, make legacy primary, and latch until re-armed."""
        return await self.change(
            {"read_percent": 0, "primary": "legacy", "failed_back": True, "reason": reason},
            source=source,
            reason=reason,
        )

    async def rearm(self, *, source: str, reason: str | None = None) -> ControlState:
        """Lift the failback latch; the ramp stays where failback left it."""
        return await self.change(
            {"failed_back": False, "reason": None}, source=source, reason=reason
        )

    async def refresh(self) -> bool:
        """Adopt the stored state if it is not the one obeyed here; return whether it was."""
        found = await self.db.read(read_state)
        if found is None or found[0] == self.state:
            return False
        self._adopt(found[0], "shared")
        return True

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest audit entries, newest first."""
        return await self.db.read(lambda conn: audit_entries(conn, limit))

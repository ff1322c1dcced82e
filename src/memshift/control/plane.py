"""The control plane of one proxy instance: the state it obeys, kept current.

The state is read from memory on the request path and changed only through the state
db, so every instance sharing that database converges on the newest epoch: ``refresh``
adopts what another instance wrote.
"""

from __future__ import annotations

from typing import Any

import structlog

from memshift.config.settings import RoutingSettings
from memshift.control.state import (
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


class ControlPlane:
    """The current ``ControlState`` and the ways to change it."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.state = ControlState(
            primary="legacy", read_percent=0, shadow_read_percent=0, write_mode="sync"
        )

    def _adopt(self, state: ControlState, source: str) -> ControlState:
        if state.epoch != self.state.epoch:
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

    async def start(self, routing: RoutingSettings) -> ControlState:
        """Load the shared state, applying what changed in the file since it was last read."""
        state = await self.db.write(lambda conn: start_state(conn, routing, now_us()))
        return self._adopt(state, "start")

    async def change(
        self, changes: dict[str, Any], *, source: str, reason: str | None = None
    ) -> ControlState:
        """Apply operator ``changes``; return the new state."""
        state = await self.db.write(
            lambda conn: change_state(conn, changes, source=source, reason=reason, now=now_us())
        )
        return self._adopt(state, source)

    async def apply_file(self, routing: RoutingSettings) -> ControlState:
        """Apply the routing values that changed in the config file."""
        state = await self.db.write(lambda conn: apply_file(conn, routing, now_us()))
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
        """Adopt the stored state if another instance changed it; return whether it did."""
        found = await self.db.read(read_state)
        if found is None or found[0].epoch == self.state.epoch:
            return False
        self._adopt(found[0], "shared")
        return True

    async def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Return the newest audit entries, newest first."""
        return await self.db.read(lambda conn: audit_entries(conn, limit))

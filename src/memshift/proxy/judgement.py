"""When judgement starts again, what it may rely on, and whether promoting is safe.

The rollback rules and the report judge *samples*; which samples count is decided here:

- A change of the control state that re-opens judgement (a rearm, a promote, a ramp)
  starts the rollback windows (compared reads and each store's health) afresh and opens
  a new report window, on every instance: each adopts the new epoch. A failback does
  not: it is the verdict itself. Without this, a rearm after a fix was judged on the
  samples from before it and tripped again at once.
- ``POST /report/reset`` opens a new report window on every instance (a document in
  the state db that each adopts), and is audited.
- Until a backfill (or a repair) has completed, records the new store lacks are
  *pending*, not differences (``shadows.backfilled``).
- ``promote_blockers`` says why promoting now would be unsafe: new's health tripped or
  inconclusive, writes waiting, divergent or held, reads still pending.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import structlog
from sqlalchemy import Connection

from memshift.compare.report import Report, Window
from memshift.control.plane import ControlPlane
from memshift.control.rollback import CompareWindow
from memshift.control.state import ControlState, audit_event
from memshift.database import Database
from memshift.migrate.marks import BACKFILLED
from memshift.proxy.health import StoreHealth
from memshift.proxy.shadows import ShadowReads
from memshift.proxy.watchdog import Watchdog
from memshift.shadow.writelog import WriteLog
from memshift.statedb import load_doc, save_doc
from memshift.timestamps import now_us

log = structlog.get_logger("memshift.proxy")

REPORT_WINDOW = "report.window"


def reopens(old: ControlState, new: ControlState) -> str | None:
    """The change from ``old`` to ``new`` that re-opens judgement, if it is one."""
    if new.failed_back:
        return None  # a failback is the verdict, not a new start
    if old.failed_back:
        return "rearm"
    if old.primary != new.primary:
        return "promote"
    if old.read_percent != new.read_percent:
        return "ramp"
    return None


class Judgement:
    """Windows of judgement, the report's windows, and promotion's preconditions."""

    def __init__(
        self,
        *,
        db: Database,
        plane: ControlPlane,
        report: Report,
        compared: CompareWindow,
        health: StoreHealth,
        shadows: ShadowReads,
        watchdog: Watchdog,
        writelog: WriteLog,
    ) -> None:
        self.db = db
        self.plane = plane
        self.report = report
        self.compared = compared
        self.health = health
        self.shadows = shadows
        self.watchdog = watchdog
        self.writelog = writelog
        plane.listeners.append(self.control_changed)

    def control_changed(self, old: ControlState, new: ControlState) -> None:
        why = reopens(old, new)
        if why is None:
            return
        self.compared.reopen()
        for window in self.health.windows.values():
            window.reopen()
        self.report.open_window(Window(f"epoch:{new.epoch}", time.time(), why, new.reason))
        log.info("judgement_reopened", by=why, epoch=new.epoch)

    async def reset_report(self, reason: str | None, source: str) -> Window:
        """Open a new report window everywhere; audited."""
        at = now_us()
        window = Window(f"reset:{at}", at / 1e6, "reset", reason)

        def write(conn: Connection) -> None:
            save_doc(conn, REPORT_WINDOW, asdict(window))
            audit_event(conn, {"report": "reset"}, source, reason, at)

        await self.db.write(write)
        self.report.open_window(window)
        return window

    async def refresh(self) -> None:
        """Adopt a report window another instance opened; learn whether a backfill ended."""
        found, backfilled = await self.db.read(
            lambda conn: (load_doc(conn, REPORT_WINDOW), load_doc(conn, BACKFILLED))
        )
        if isinstance(found, dict) and found.get("since", 0) > self.report.window.since:
            self.report.open_window(Window(**found))
        self.shadows.backfilled = bool(backfilled)

    async def promote_blockers(self) -> list[str]:
        """Why promoting new now would be unsafe (nothing: it is safe)."""
        out = []
        verdict = self.watchdog.judge()
        if verdict.state != "healthy":
            out.append(f"new's health is {verdict.state}: {verdict.reason}")
        figures = await self.writelog.figures()
        for name, what in (
            ("backlog", "writes wait in the backlog"),
            ("divergent", "writes are divergent"),
            ("held", "writes are held for verify --repair"),
        ):
            if figures.get(name):
                out.append(f"{figures[name]} {what}")
        _compared, _mismatched, pending = self.compared.counts()
        if pending:
            out.append(f"{pending} reads found records not on new yet: backfill first")
        return out

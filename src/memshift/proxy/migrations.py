"""Verify, repair and backfill run by the proxy, for stores it reaches itself.

A store that is the proxy's child (on stdio) cannot be reached by a second process,
and a store that takes one write at a time must not get a copy between two of the
proxy's writes. So while a proxy runs, ``memshift verify`` and ``memshift backfill`` of
such stores ask it (``POST /migrate``) to run them, and follow their progress
(``GET /migrate``). One job runs at a time.

Each step of a job runs in a *quiet* spell: no write on its way to either store, the
backlog empty, and every write that comes waits until the step is done (the lanes'
barrier, ``shadow/lanes.py``). Steps are short (a kind's look, a batch of copies), so
writes wait a little, and nothing is copied stale or overtaken.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from memshift.config.settings import Settings
from memshift.control.plane import ControlPlane
from memshift.links.stores import StoreLinks
from memshift.migrate.profiled import ProfiledMigration, summary
from memshift.migrate.progress import Progress
from memshift.scheduler import Scheduler
from memshift.shadow.idmap import IdMap
from memshift.shadow.lanes import Lanes
from memshift.shadow.records import GLOBAL
from memshift.shadow.writelog import WriteLog

log = structlog.get_logger("memshift.migrate")
QUIET_WITHIN_S = 120.0

JobKind = Literal["verify", "backfill"]


class NotQuiet(Exception):
    """The backlog did not drain: a step cannot run without overtaking it."""


@dataclass
class Job:
    """One migration job the proxy runs."""

    kind: JobKind
    repair: bool
    started_at: float = field(default_factory=time.time)
    state: Literal["running", "done", "failed"] = "running"
    progress: Progress | None = None
    result: dict[str, Any] | None = None
    error: str | None = None

    def document(self) -> dict[str, Any]:
        shown: dict[str, Any] = {
            "kind": self.kind,
            "repair": self.repair,
            "state": self.state,
            "started_at": self.started_at,
            "result": self.result,
            "error": self.error,
        }
        if self.progress is not None:
            shown["progress"] = {
                "done": self.progress.done,
                "total": self.progress.total,
                "rate_per_s": round(self.progress.rate(), 1),
                "eta_s": self.progress.eta_s(),
                "line": self.progress.line(self.state),
            }
        return shown


class Migrations:
    """The proxy's migration jobs (see the module)."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        links: StoreLinks,
        idmap: IdMap,
        lanes: Lanes,
        writelog: WriteLog,
        plane: ControlPlane,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self.settings = settings
        self.links = links
        self.idmap = idmap
        self.lanes = lanes
        self.writelog = writelog
        self.plane = plane
        self.job: Job | None = None
        self.jobs = Scheduler(
            name="migrate", limit=1, pending_limit=0, close_timeout=1.0, on_error=on_error
        )

    def start(self, kind: JobKind, repair: bool = False) -> Job | None:
        """Start a job; None while one runs."""
        if self.job is not None and self.job.state == "running":
            return None
        job = self.job = Job(kind, repair)
        self.jobs.spawn(self._run(job), kind)
        return job

    async def _run(self, job: Job) -> None:
        settings = self.settings()
        primary = self.plane.state.primary

        def progress(what: str) -> Progress:
            job.progress = Progress(what, 0, io.StringIO(), tty=False)
            return job.progress

        migration = ProfiledMigration(
            settings,
            self.links.send,
            self.idmap,
            primary,
            quiet=self.quiet,
            progress=progress,
            settled=self.writelog.copied_over,
        )
        try:
            if job.kind == "verify":
                results, repaired = await migration.verify(job.repair)
                job.result = summary(results, primary, repaired)
            else:
                job.result = await migration.backfill()
            job.state = "done"
        except Exception as exc:
            job.state, job.error = "failed", str(exc) or type(exc).__name__
            log.error("migration_failed", job=job.kind, exc_info=exc)

    @asynccontextmanager
    async def quiet(self) -> AsyncIterator[None]:
        """Hold every record while the backlog is empty and nothing is on its way."""
        deadline = time.monotonic() + QUIET_WITHIN_S
        while True:
            async with self.lanes.lock((), barrier=True):
                waits, mine = self.lanes.join((GLOBAL,), ())
                try:
                    await asyncio.gather(*waits)
                    if not self.lanes.blocked and not (await self.writelog.figures())["backlog"]:
                        yield
                        return
                finally:
                    mine.set_result(True)
            if time.monotonic() > deadline:
                raise NotQuiet("the backlog did not drain: see memshift status")
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        """Stop a running job (it can be run again)."""
        await self.jobs.close()

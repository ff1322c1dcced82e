"""What one proxy instance holds: settings, control plane, stores, id map, metrics.

Every request to a store goes through ``ProxyCore.send`` (or ``open_stream``), and
``ProxyCore.note`` is the one place where health windows and metrics see each store's
outcomes and latency, the shadow helper's exchanges included.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog

from memshift.compare import store as report_store
from memshift.compare.report import Report
from memshift.config.settings import STORE_NAMES, Settings, StoreName
from memshift.config.watch import SettingsHolder
from memshift.control.health import HealthWindow
from memshift.control.plane import ControlPlane
from memshift.control.rollback import CompareWindow, Verdict, judge
from memshift.control.schedule import Schedule
from memshift.database import Database
from memshift.errors import UpstreamError
from memshift.mcp.sessions import Sessions
from memshift.proxy.metrics import STATUS_CLASS, ProxyMetrics
from memshift.proxy.stores import Stores
from memshift.scheduler import Scheduler
from memshift.shadow.dispatch import Mirroring
from memshift.shadow.identity import Identities
from memshift.shadow.idmap import IdMap
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import Mirror, Outcome
from memshift.shadow.replay import Replayer
from memshift.shadow.translate import Translator
from memshift.shadow.writelog import WriteLog
from memshift.timestamps import now_us
from memshift.upstream import (
    OutboundRequest,
    StreamedResponse,
    Upstream,
    UpstreamResponse,
)

if TYPE_CHECKING:
    from memshift.proxy.shadowhelper import ShadowHelper

log = structlog.get_logger("memshift.proxy")


class ProxyCore:
    """The state and the outbound side of one proxy instance."""

    def __init__(
        self,
        settings: Settings,
        state_db: Database,
        upstreams: dict[StoreName, Upstream] | None = None,
        worker: int | None = None,
    ) -> None:
        self.holder = SettingsHolder(settings)
        self.state_db = state_db
        self.plane = ControlPlane(state_db)
        self.idmap = IdMap(state_db)
        self.translator = Translator(self.idmap)
        self.log = WriteLog(state_db)
        self.idmap.write = self.log.submit
        self.idmap.post = self.log.post_soon
        self.lanes = Lanes()
        self.identities = Identities()
        self.metrics = ProxyMetrics()
        window = settings.rollback.window_s
        self.health = {name: HealthWindow(window) for name in STORE_NAMES}
        self.compared = CompareWindow(window)
        self.verdict = Verdict("inconclusive", "starting", {})
        self.schedule = Schedule()
        self.sessions = Sessions(db=state_db)  # shared by instances and workers
        self.background = Scheduler(
            name="proxy",
            limit=64,
            pending_limit=1024,
            close_timeout=5.0,
            on_error=self.background_failed,
        )
        self.stores = Stores(lambda: self.holder.current, self.background.spawn, upstreams)
        self.mirror = Mirror(
            self.translator,
            self.send,
            tokens=lambda store: self.holder.current.stores[store].token,
            settings=lambda: self.holder.current.mirror,
        )
        self.mirroring = Mirroring(
            self.log,
            self.lanes,
            self.mirror,
            settings=lambda: self.holder.current.mirror,
            counted=self.count_outcome,
        )
        self.replayer = Replayer(
            self.mirroring,
            routes=lambda: (*self.holder.current.routes, *self.holder.current.tools),
        )
        self.report = Report()
        self.instance = f"{socket.gethostname()}:{settings.proxy.listen}" + (
            f"/worker{worker}" if worker is not None else ""
        )
        self.shadows = Scheduler(
            name="shadow",
            limit=settings.compare.workers,
            pending_limit=settings.compare.queue,
            close_timeout=2.0,
            on_error=self.compare_failed,
        )
        self.mirror_jobs = Scheduler(
            name="mirror",
            limit=settings.mirror.workers,
            pending_limit=settings.mirror.queue,
            close_timeout=10.0,
            on_error=self.background_failed,
        )
        self.shadow_helper: ShadowHelper | None = None  # started with the proxy's app
        self.holder.listeners.append(self.reconfigure)

    @property
    def shadows_active(self) -> int:
        """Shadow reads not settled yet, in this process and in its helper."""
        return self.shadows.active + (self.shadow_helper.active if self.shadow_helper else 0)

    def count_outcome(self, store: StoreName, outcome: Outcome) -> None:
        """Count what came of a mirrored write."""
        self.metrics.mirror_outcome(store, outcome.kind.value).inc()
        if outcome.reason and outcome.kind.value != "done":
            self.metrics.mirror_failures.labels(store=store, reason=outcome.reason).inc()

    def compare_failed(self, label: str, error: BaseException) -> None:
        """The one hook for failures of shadow work: logged and counted, never the client's."""
        self.report.errors += 1
        log.error("compare_failed", route=label, error=repr(error))

    async def report_loop(self) -> None:
        """Save this instance's report every two seconds when it changed."""
        while True:
            await asyncio.sleep(2.0)
            if self.report.dirty:
                try:
                    await report_store.save(self.state_db, self.instance, self.report)
                except Exception as exc:
                    self.background_failed("report_save", exc)

    def background_failed(self, label: str, error: BaseException) -> None:
        """The one hook for failures of background work: log and count, never raise."""
        log.error("background_job_failed", job=label, error=repr(error))

    def note(
        self,
        store: StoreName,
        route: str,
        purpose: str,
        status: int | None,
        elapsed_s: float,
        timeout: bool = False,
    ) -> None:
        """Record one exchange with ``store`` in its health window and the metrics.

        ``status`` None: the store left it unanswered (timed out, or unreachable).
        """
        if status is None:
            self.health[store].record(0.0, error=True)
            outcome = "timeout" if timeout else "unreachable"
            self.metrics.upstream_outcome(store, route, purpose, outcome).inc()
            return
        self.health[store].record(elapsed_s, error=status >= 500)
        self.metrics.upstream_outcome(store, route, purpose, STATUS_CLASS[status // 100]).inc()
        self.metrics.upstream_latency(store, route).observe(elapsed_s)

    async def send(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str
    ) -> UpstreamResponse:
        """Send ``request`` to ``store``, recording the outcome; raise ``UpstreamError``."""
        try:
            answer = await self.stores.send(store, request)
        except UpstreamError as exc:
            self.note(store, route, purpose, None, 0.0, exc.timeout)
            raise
        self.note(store, route, purpose, answer.status, answer.elapsed_s)
        return answer

    @asynccontextmanager
    async def open_stream(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str
    ) -> AsyncIterator[StreamedResponse]:
        """Send ``request`` to ``store``; its body is read while the context is open."""
        try:
            async with self.stores.stream(store, request) as answer:
                self.note(store, route, purpose, answer.status, answer.elapsed_s)
                yield answer
        except UpstreamError as exc:
            self.note(store, route, purpose, None, 0.0, exc.timeout)
            raise

    async def log_figures(self) -> dict[str, int]:
        """Return backlog size and age, divergent writes and group-commit counts."""
        figures = await self.log.figures()
        oldest = figures.pop("oldest_at")
        age = max(0, (now_us() - oldest) // 1_000_000) if oldest else 0
        alert = figures["backlog"] >= self.holder.current.mirror.backlog_alert
        if alert:
            log.warning("repair_backlog_high", backlog=figures["backlog"], age_s=age)
        return figures | {
            "age_s": age,
            "alert": int(alert),
            "commits": self.log.commits,
            "operations": self.log.operations,
        }

    def judge(self) -> Verdict:
        """Return the verdict on the new store over the rollback window."""
        settings = self.holder.current
        compared, mismatched = self.compared.figures()
        self.verdict = judge(
            self.health["new"].figures(),
            self.health["legacy"].figures(),
            compared,
            mismatched,
            settings.rollback,
            comparing=self.plane.state.shadow_read_percent > 0,
        )
        return self.verdict

    async def watchdog(self) -> None:
        """Fail back by itself when the new store crosses a threshold; every second."""
        while True:
            await asyncio.sleep(1.0)
            try:
                verdict = self.judge()
                state = self.plane.state
                if verdict.state == "tripped" and not state.failed_back:
                    await self.plane.failback(str(verdict.reason), source="watchdog")
                    self.metrics.failbacks.inc()
                    log.error("failback", reason=verdict.reason, **verdict.figures)
                elif not state.failed_back:
                    await self._follow_schedule(verdict)
            except Exception as exc:
                self.background_failed("watchdog", exc)

    async def _follow_schedule(self, verdict: Verdict) -> None:
        steps = self.holder.current.routing.steps
        state = self.plane.state
        step = self.schedule.tick(steps, state.read_percent, verdict.state, 1.0)
        if step is not None:
            reason = (
                f"schedule: healthy for {self.schedule.healthy_s:.0f}s at {state.read_percent}%"
            )
            await self.plane.change(
                {"read_percent": step.read_percent}, source="schedule", reason=reason
            )

    async def replay_loop(self) -> None:
        """Replay the backlog whenever there is one; run for the life of the proxy."""
        while True:
            await asyncio.sleep(self.holder.current.mirror.replay_interval_s)
            try:
                if not self.replayer.orphans and not await self.log.replayable():
                    continue  # only writes still in their requests' hands: nothing to do
                result = await self.replayer.run_pass()
                log.info(
                    "replay_pass",
                    replayed=result.replayed,
                    divergent=result.divergent,
                    skipped=result.skipped,
                    stopped=result.stopped,
                )
            except Exception as exc:
                self.background_failed("replay", exc)

    async def reconfigure(self, settings: Settings, changed: frozenset[str]) -> None:
        """Follow a reloaded config file: routing values, stores, windows."""
        if any(k.startswith("routing.") for k in changed):
            await self.plane.apply_file(settings.routing)
        self.stores.follow(settings, changed)
        for window in self.health.values():
            window.window_s = settings.rollback.window_s
        self.compared.window_s = settings.rollback.window_s

    async def close(self) -> None:
        """Finish mirroring in flight, stop background work, release connections."""
        await self.mirror_jobs.close()
        if self.shadow_helper is not None:
            await self.shadow_helper.close()
        await self.shadows.close()
        try:
            await asyncio.wait_for(self.log.settle(), 5)  # or replayed after the restart
        except Exception as exc:
            self.background_failed("write_log_settle", exc)
        if self.report.dirty:
            try:
                await report_store.save(self.state_db, self.instance, self.report)
            except Exception as exc:
                self.background_failed("report_save", exc)
        await self.background.close()
        await self.stores.close()

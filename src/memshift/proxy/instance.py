"""One proxy instance: its parts, each built once with what it needs, started and stopped in order.

This is the composition root. The parts are roles, each an object of its own module:

- the store links (``links/``), whose every exchange feeds the stores' health;
- the read path and the write path (``reads.py``, ``writes.py``): the request policy,
  once for every protocol, over the codecs' calls (``rest.py``, ``mcp/``);
- mirroring, the write log and replay (``shadow/``);
- shadow reads and their judgement (``shadows.py``), the watchdog (``watchdog.py``);
- the control plane (``control/``) and the config holder with its reload listeners.

Nothing is wired after construction: what a part needs, it is given here. ``start``
starts the background work; ``close`` stops it in order: mirroring in flight first,
then shadow reads, the write log's last clean-up, the report, the loops, the links.
A background failure is logged with its traceback and counted
(``memshift_background_failures_total{job}``); no loop dies of one.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog

from memshift.compare import store as report_store
from memshift.compare.report import Report
from memshift.config.settings import Settings, StoreName
from memshift.config.watch import SettingsHolder, watch
from memshift.control.peers import Peers
from memshift.control.plane import ControlPlane
from memshift.database import Database
from memshift.links.stores import StoreLinks
from memshift.proxy.health import StoreHealth
from memshift.proxy.identity import Identity
from memshift.proxy.judgement import Judgement
from memshift.proxy.mcp.exchange import McpParts
from memshift.proxy.mcp.sessions import Sessions
from memshift.proxy.metrics import ProxyMetrics
from memshift.proxy.migrations import Migrations
from memshift.proxy.reads import ReadPath
from memshift.proxy.rest import RestParts
from memshift.proxy.shadows import ShadowReads
from memshift.proxy.watchdog import Watchdog
from memshift.proxy.writes import WritePath
from memshift.scheduler import Scheduler
from memshift.shadow.dispatch import Mirroring
from memshift.shadow.groupcommit import GroupCommit
from memshift.shadow.idmap import IdMap
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import Mirror, Outcome
from memshift.shadow.replay import Replayer
from memshift.shadow.translate import Translator
from memshift.shadow.writelog import WriteLog
from memshift.statedb import open_state, take_lease
from memshift.timestamps import now_us

log = structlog.get_logger("memshift.proxy")

REFRESH_EVERY_S = 1.0
CHECKPOINT_EVERY_S = 1.0
REPORT_EVERY_S = 2.0
WATCHDOG_EVERY_S = 1.0


class Proxy:
    """One proxy instance (see the module)."""

    def __init__(self, settings: Settings, state_db: Database, worker: int | None = None) -> None:
        self.holder = SettingsHolder(settings)
        current = self._current
        self.state_db = state_db
        # Stable across restarts (its report and its orphans are found again); an
        # instance on port 0 cannot be told from another by its address.
        self.instance = (
            f"{socket.gethostname()}:{settings.proxy.listen}"
            + (f"/worker{worker}" if worker is not None else "")
            + (f"#{secrets.token_hex(4)}" if settings.proxy.listen.port == 0 else "")
        )
        self.metrics = ProxyMetrics()
        self.background = Scheduler(
            name="proxy", limit=64, pending_limit=1024, close_timeout=5.0, on_error=self.failed
        )
        self.plane = ControlPlane(state_db)
        self.peers = Peers(state_db, self.instance)
        self.commits = GroupCommit(state_db)  # the write log's and the id map's writes
        self.writelog = WriteLog(state_db, self.commits)
        self.idmap = IdMap(
            state_db,
            write=self.commits.submit,
            post=self.commits.post_soon,
            post_row=self.commits.post_rows,
        )
        self.translator = Translator(self.idmap, lambda: self._current().forms)
        self.lanes = Lanes()
        self.health = StoreHealth(settings.rollback.window_s, self.metrics)
        self.links = StoreLinks(
            current,
            lambda job, label: self.background.spawn(job, label, daemon=True),
            self.health.observe,
        )
        self.report = Report()
        self.mirroring = Mirroring(
            self.writelog,
            self.lanes,
            Mirror(
                self.translator,
                self.links.send,
                stores=lambda: self._current().stores,
                settings=lambda: self._current().mirror,
            ),
            settings=lambda: self._current().mirror,
            counted=self._count_mirrored,
        )
        self.replayer = Replayer(self.mirroring, current, self.peers)
        self.shadows = ShadowReads(
            settings=current,
            plane=self.plane,
            lanes=self.lanes,
            report=self.report,
            metrics=self.metrics,
            links=self.links,
            health=self.health,
            translator=self.translator,
        )
        self.watchdog = Watchdog(
            settings=current,
            plane=self.plane,
            health=self.health,
            compared=self.shadows.window,
            metrics=self.metrics,
        )
        self.judgement = Judgement(
            db=state_db,
            plane=self.plane,
            report=self.report,
            compared=self.shadows.window,
            health=self.health,
            shadows=self.shadows,
            watchdog=self.watchdog,
            writelog=self.writelog,
        )
        identity = Identity(current, self.links)  # one cache for writes and reads' samples
        self.writes = WritePath(
            settings=current,
            plane=self.plane,
            identity=identity,
            writelog=self.writelog,
            lanes=self.lanes,
            mirroring=self.mirroring,
            on_error=lambda _label, exc: self.failed("mirror", exc),
            counted_unmirrored=self.metrics.unmirrored.inc,
            peers=self.peers,
            settle=self.replayer.settle_unsure,
        )
        self.reads = ReadPath(
            settings=current,
            plane=self.plane,
            lanes=self.lanes,
            shadows=self.shadows,
            metrics=self.metrics,
            identity=identity,
        )
        self.migrations = Migrations(
            settings=current,
            links=self.links,
            idmap=self.idmap,
            lanes=self.lanes,
            writelog=self.writelog,
            plane=self.plane,
            on_error=lambda _label, exc: self.failed("migrate", exc),
        )
        self.sessions = Sessions(db=state_db)  # shared by instances and workers
        self.rest = RestParts(current, self.links, self.translator)
        self.mcp = McpParts(
            current, self.links, self.translator, self.sessions, self.plane, self.metrics
        )
        self.holder.subscribe("control", self._routing_changed)
        self.holder.subscribe("links", self._links_changed)
        self.holder.subscribe("windows", self._windows_changed)
        if self.shadows.helper is not None:
            self.holder.subscribe("shadow-helper", self.shadows.helper.reconfigure)

    def _current(self) -> Settings:
        return self.holder.current

    # Reload listeners: each applies one part of a change, and takes the old settings
    # back the same way when another listener fails.

    async def _routing_changed(self, settings: Settings, changed: frozenset[str]) -> None:
        if any(k.startswith("routing.") for k in changed):
            await self.plane.apply_file(settings.routing)

    async def _links_changed(self, settings: Settings, changed: frozenset[str]) -> None:
        self.links.follow(settings, changed)

    async def _windows_changed(self, settings: Settings, _changed: frozenset[str]) -> None:
        self.health.resize(settings.rollback.window_s)
        self.shadows.window.window_s = settings.rollback.window_s

    def failed(self, job: str, error: BaseException) -> None:
        """The one hook for failures of background work: logged with traceback, counted."""
        self.metrics.background_failures(job).inc()
        log.error("background_job_failed", job=job, exc_info=error)

    def _count_mirrored(self, store: StoreName, outcome: Outcome) -> None:
        self.metrics.mirror_outcome(store, outcome.kind.value).inc()
        if outcome.reason and outcome.kind.value != "done":
            self.metrics.mirror_failures.labels(store=store, reason=outcome.reason).inc()

    def _every(
        self, seconds: Callable[[], float], work: Callable[[], Awaitable[object]], job: str
    ) -> None:
        """Run ``work`` every ``seconds()`` for the life of the proxy; failures are counted."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds())
                try:
                    await work()
                except Exception as exc:
                    self.failed(job, exc)

        self.background.spawn(loop(), job, daemon=True)

    async def start(self) -> None:
        """Take the shared state, recover the write log, start the background work."""
        settings = self.holder.current
        await self.plane.start(settings.routing)
        await self.peers.beat()  # the others learn of this one at their next beat
        self.background.spawn(self.commits.flusher(), "write_log", daemon=True)
        if self.shadows.helper is not None:
            self.background.spawn(self.shadows.helper.run(), "shadow_helper", daemon=True)
        mine = (await report_store.saved(self.state_db)).get(self.instance)
        if mine:
            self.report.absorb(mine, adopt_window=True)  # the report survives a restart
        await self.replayer.recover()
        self._every(lambda: REPORT_EVERY_S, self._save_report, "report_save")
        self._every(lambda: self._current().mirror.replay_interval_s, self._replay, "replay")
        self._every(lambda: REFRESH_EVERY_S, self._refresh, "control_refresh")
        self._every(lambda: CHECKPOINT_EVERY_S, self.state_db.checkpoint, "state_checkpoint")
        self._every(lambda: WATCHDOG_EVERY_S, self.watchdog.tick, "watchdog")
        if settings.source:
            self.background.spawn(
                watch(self.holder, Path(settings.source)), "config_watch", daemon=True
            )
        log.info(
            "proxy_ready",
            listen=str(settings.proxy.listen),
            epoch=self.plane.state.epoch,
            primary=self.plane.state.primary,
            read_percent=self.plane.state.read_percent,
        )

    async def _save_report(self) -> None:
        if self.report.dirty:
            await report_store.save(self.state_db, self.instance, self.report)

    async def _replay(self) -> None:
        """Replay the backlog when there is one (one instance at a time: the lease's)."""
        if not self.replayer.orphans and not await self.writelog.replayable():
            return  # only writes still in their requests' hands: nothing to do
        if self.peers.shared and not await self.take_replay_lease():
            return  # another instance replays the shared log now
        result = await self.replayer.run_pass()
        log.info(
            "replay_pass",
            replayed=result.replayed,
            divergent=result.divergent,
            skipped=result.skipped,
            stopped=result.stopped,
        )

    async def take_replay_lease(self) -> bool:
        """Take the lease of replaying the shared write log (one instance at a time)."""
        ttl = int((self._current().mirror.replay_interval_s * 3 + 5) * 1_000_000)
        name, now = self.instance, now_us()
        return await self.state_db.write(
            lambda conn: take_lease(conn, "replay_lease", name, now, ttl)
        )

    async def _refresh(self) -> None:
        """Adopt control changes other instances made, and pairs a repair replaced."""
        await self.peers.beat()
        await self.plane.refresh()
        await self.judgement.refresh()
        if await self.idmap.sync():
            log.info("id_map_reloaded", reason="pairs replaced by a repair")

    async def backlog(self) -> dict[str, int]:
        """Return backlog size and age, divergent writes and group-commit counts."""
        figures = await self.writelog.figures()
        oldest = figures.pop("oldest_at")
        age = max(0, (now_us() - oldest) // 1_000_000) if oldest else 0
        alert = figures["backlog"] >= self._current().mirror.backlog_alert
        if alert:
            log.warning("repair_backlog_high", backlog=figures["backlog"], age_s=age)
        return figures | {
            "age_s": age,
            "alert": int(alert),
            "commits": self.commits.commits,
            "operations": self.commits.operations,
        }

    async def close(self) -> None:
        """Stop in order: mirroring in flight, shadow reads, the write log, loops, links."""
        await self.migrations.close()
        await self.writes.close()
        await self.shadows.close()
        try:
            await asyncio.wait_for(self.commits.commit_now(), 5)  # or replayed after restart
        except Exception as exc:
            self.failed("write_log_commit", exc)
        try:
            await self._save_report()
        except Exception as exc:
            self.failed("report_save", exc)
        await self.background.close()
        try:
            await self.peers.leave()
        except Exception as exc:
            self.failed("instance_leave", exc)
        await self.links.close()


def make_proxy(settings: Settings, worker: int | None = None) -> Proxy:
    """Return a proxy instance for ``settings`` (opens the state db)."""
    return Proxy(settings, open_state(settings.state.url), worker)

"""Shadow reads of one proxy instance: sampled, handed off, judged, reported.

After the client has its answer, a sampled share of reads (``shadow_read_percent``) is
handed to the shadow helper process (``proxy/shadowhelper.py``), or with ``[compare]
helper = false`` to a scheduler in this process. Both are bounded: when full, the
shadow read is dropped and counted, never queued without bound.

The work itself (``shadow/reads.py``) reports back what it found, and ``judge`` turns
it into a verdict here, where the noise learned so far and the records' lanes are
known: a read compared while a write to its record was pending is in-flight, not a
mismatch. The verdict goes into the report, the compare window the watchdog judges,
and the metrics. A failure of shadow work goes to ``failed``: logged and counted,
never the client's.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import structlog

from memshift.compare.compare import judge
from memshift.compare.report import Report
from memshift.config.settings import Settings, StoreName
from memshift.control.plane import ControlPlane
from memshift.control.rollback import CompareWindow
from memshift.links.stores import Exchange, StoreLinks
from memshift.proxy.health import StoreHealth
from memshift.proxy.metrics import ProxyMetrics
from memshift.proxy.shadowhelper import ShadowHelper
from memshift.scheduler import Scheduler
from memshift.shadow.lanes import Lanes
from memshift.shadow.reads import ReadCopy, Shadowed, observe
from memshift.shadow.translate import Translator

log = structlog.get_logger("memshift.proxy")


class ShadowReads:
    """Samples reads, hands them to the helper (or runs them here), judges what they find."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        plane: ControlPlane,
        lanes: Lanes,
        report: Report,
        metrics: ProxyMetrics,
        links: StoreLinks,
        health: StoreHealth,
        translator: Translator,
    ) -> None:
        compare = settings().compare
        self.settings = settings
        self.plane = plane
        self.lanes = lanes
        self.report = report
        self.metrics = metrics
        self.links = links
        self.health = health
        self.translator = translator
        self.window = CompareWindow(settings().rollback.window_s)
        # Whether a backfill has completed: until then, what new lacks is pending.
        self.backfilled = False
        self.scheduler = Scheduler(
            name="shadow",
            limit=compare.workers,
            pending_limit=compare.queue,
            close_timeout=2.0,
            on_error=self.failed,
        )
        # A store run on stdio is this process's child: the helper cannot reach it.
        stdio = any(store.command for store in settings().stores.values())
        self.helper = (
            ShadowHelper(settings, self, translator.idmap) if compare.helper and not stdio else None
        )

    def sampled(self) -> bool:
        """Whether this read is one to compare (``shadow_read_percent``)."""
        percent = self.plane.state.shadow_read_percent
        return percent > 0 and random.random() * 100 < percent

    def schedule(self, read: ReadCopy, served: StoreName, status: int, body: bytes) -> None:
        """Compare the answer the client got from ``served`` with the other store's, later.

        Bounded: when the helper and the scheduler are full, the read is dropped and
        counted.
        """
        helper = self.helper
        if helper is not None and helper.running and helper.submit(read, served, status, body):
            return
        if helper is not None and helper.running:  # the helper has enough in hand
            self._dropped()
            return
        if not self.scheduler.spawn(self._here(read, served, status, body), read.match.spec.name):
            self._dropped()

    def _dropped(self) -> None:
        self.metrics.shadow_dropped.inc()
        self.report.dropped += 1

    @property
    def active(self) -> int:
        """Shadow reads not judged yet, in this process and in its helper."""
        return self.scheduler.active + (self.helper.active if self.helper else 0)

    async def _here(self, read: ReadCopy, served: StoreName, status: int, body: bytes) -> None:
        compare = self.settings().compare
        shadowed = await observe(
            self.translator, self.links.send, compare, read, served, status, body
        )
        self.judge(read, shadowed)

    def judge(self, read: ReadCopy, shadowed: Shadowed) -> None:
        """Turn what a shadow read found into a verdict: report, window and metrics."""
        route = shadowed.route
        if shadowed.noise is not None:
            self.report.learn_noise(route, set(shadowed.noise))
        comparison = judge(
            route,
            shadowed.found,
            shadowed.control,
            shadowed.candidate,
            noise_paths=self.report.noise_paths.get(route, set()),
            inflight=not self.lanes.settled(read.fence, read.before),
            pending=shadowed.unpaired or self.lanes.waiting(read.fence),
            backfilled=self.backfilled,
        )
        self.report.record(comparison, records=self._records(read.fence), user=read.user)
        self.window.record(comparison.verdict, caller=read.caller)
        self.metrics.comparison(route, comparison.verdict).inc()

    def _records(self, fence: str | None) -> list[dict[str, Any]]:
        """The record a read was of, by its id in both stores (as far as known here)."""
        if not fence or ":" not in fence:
            return []
        kind, _, text = fence.partition(":")
        forms = self.translator.forms()
        legacy = forms.canonical(kind, text)
        if legacy is None:
            return []
        new = legacy if forms.natural(kind) else self.translator.idmap.cached(kind, legacy)
        return [{"kind": kind, "legacy": legacy, "new": new}]

    def failed(self, route: str, error: BaseException, count: int = 1) -> None:
        """The one hook for failures of shadow work: logged and counted, never the client's."""
        self.report.failures += count
        self.metrics.background_failures("shadow").inc(count)
        log.error("compare_failed", route=route, reads=count, exc_info=error)

    def observe(self, exchange: Exchange) -> None:
        """An exchange the helper had with a store: into the health windows and metrics."""
        self.health.observe(exchange)

    async def close(self) -> None:
        """Let shadow reads in hand finish for a while; cancel the rest; stop the helper."""
        if self.helper is not None:
            await self.helper.close()
        await self.scheduler.close()

"""The watchdog: judges the new store every second, fails back by itself, follows the schedule.

The verdict comes from the rollback rules (``control/rollback.py``) over the health
windows and the compare window. A tripped verdict fails back (latched until an
operator re-arms); a healthy one lets the ramp schedule (``[[routing.steps]]``) move on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from memshift.config.settings import Settings
from memshift.control.plane import ControlPlane
from memshift.control.rollback import CompareWindow, Verdict, judge
from memshift.control.schedule import Schedule
from memshift.proxy.health import StoreHealth
from memshift.proxy.metrics import ProxyMetrics

log = structlog.get_logger("memshift.proxy")


class Watchdog:
    """Judges the new store and acts on the verdict."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        plane: ControlPlane,
        health: StoreHealth,
        compared: CompareWindow,
        metrics: ProxyMetrics,
    ) -> None:
        self.settings = settings
        self.plane = plane
        self.health = health
        self.compared = compared
        self.metrics = metrics
        self.schedule = Schedule()
        self.verdict = Verdict("inconclusive", "starting", {})

    def judge(self) -> Verdict:
        """Return the verdict on the new store over the rollback window."""
        compared, mismatched = self.compared.figures()
        self.verdict = judge(
            self.health.windows["new"].figures(),
            self.health.windows["legacy"].figures(),
            compared,
            mismatched,
            self.settings().rollback,
            comparing=self.plane.state.shadow_read_percent > 0,
            compare_callers=self.compared.callers(),
        )
        return self.verdict

    async def tick(self) -> None:
        """Judge once; fail back on a trip, else follow the schedule."""
        verdict = self.judge()
        state = self.plane.state
        if verdict.state == "tripped" and not state.failed_back:
            await self.plane.failback(str(verdict.reason), source="watchdog")
            self.metrics.failbacks.inc()
            log.error("failback", reason=verdict.reason, **verdict.figures)
        elif not state.failed_back:
            await self._follow_schedule(verdict)

    async def _follow_schedule(self, verdict: Verdict) -> None:
        steps = self.settings().routing.steps
        state = self.plane.state
        step = self.schedule.tick(steps, state.read_percent, verdict.state, 1.0)
        if step is not None:
            reason = (
                f"schedule: healthy for {self.schedule.healthy_s:.0f}s at {state.read_percent}%"
            )
            await self.plane.change(
                {"read_percent": step.read_percent}, source="schedule", reason=reason
            )

    async def run(self, every_s: float = 1.0) -> None:
        """Tick every ``every_s`` for the life of the proxy (failures are the caller's)."""
        while True:
            await asyncio.sleep(every_s)
            await self.tick()

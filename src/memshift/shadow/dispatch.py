"""From an accepted write to its outcome on the secondary, in order, never dropped.

``Mirroring.job`` is called under the record's lock right after the primary accepted
a write: it joins the record's lane (or sends the write to the backlog when the record
is blocked) and returns the work to do, which the proxy awaits (``sync``) or schedules
(``async``). Whatever the work meets, the write ends mirrored, in the backlog, or
divergent: never lost. The primary's answer reaches the write log only with a backlog
or divergent outcome; a write mirrored at once costs the log its intent and its end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import structlog

from memshift import jsonpath
from memshift.config.settings import MirrorSettings, StoreName, other
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import Kind, Mirror, Outcome, Write
from memshift.shadow.routes import RouteMatch
from memshift.shadow.writelog import Answered, WriteLog

log = structlog.get_logger("memshift.shadow")


def record_keys(match: RouteMatch, body_doc: Any) -> tuple[str | None, tuple[str, ...]]:
    """Return the record a write changes (``kind:id``, None for a create) and those it needs."""
    spec = match.spec
    keys = [f"{k}:{v}" for k, v in zip(spec.path_kinds, match.params, strict=True) if v.isdigit()]
    own = keys.pop() if keys else None
    if isinstance(body_doc, dict):
        for path, kind in spec.request_ids:
            found = [f"{kind}:{v}" for v in jsonpath.values(body_doc, path) if type(v) is int]
            if spec.record is not None and path == spec.record[0] and found:
                own = found[0]  # a tool names its record among its arguments
                continue
            keys += found
    return own, tuple(sorted(set(keys)))


def created_key(match: RouteMatch, primary: StoreName, answer_doc: Any) -> str | None:
    """Return the record key of what a create made, when the client-side id is known."""
    kind = match.spec.creates
    if kind is None or primary != "legacy" or not isinstance(answer_doc, dict):
        return None
    new_id = answer_doc.get("id")
    return f"{kind}:{new_id}" if type(new_id) is int else None


UNANSWERED = ("unreachable", "timeout")


@dataclass(frozen=True)
class Taken:
    """A logged write the primary accepted: its log entry, the primary and its answer."""

    entry_id: int
    primary: StoreName
    answered: Answered


@dataclass
class Mirroring:
    """Live mirroring of accepted writes, through lanes, into the write log.

    When a store left a write unanswered after its retries, it is taken for down until
    the next replay interval: writes meanwhile go straight to the backlog instead of
    each waiting through its own retries, so clients see no slowdown.
    """

    writelog: WriteLog
    lanes: Lanes
    mirror: Mirror
    settings: Callable[[], MirrorSettings]
    counted: Callable[[StoreName, Outcome], None]
    down_until: dict[StoreName, float] = field(default_factory=dict)

    def is_down(self, store: StoreName) -> bool:
        """Whether ``store`` is taken for down right now."""
        return self.down_until.get(store, 0.0) > time.monotonic()

    def mark(self, store: StoreName, up: bool) -> None:
        """Note that ``store`` answered (``up``) or left a write unanswered."""
        if up:
            self.down_until.pop(store, None)
        else:
            self.down_until[store] = time.monotonic() + self.settings().replay_interval_s

    def job(
        self, write: Write, taken: Taken, depends: tuple[str, ...]
    ) -> Coroutine[Any, Any, None]:
        """Join the lanes with a write the primary accepted; return the mirroring work."""
        own = taken.answered.record_key
        blocked = self.lanes.is_blocked([own, *depends])
        if blocked or self.is_down(other(taken.primary)):
            self.lanes.block(own)
            return self._hold(taken, "blocked" if blocked else "store_down")
        waits, mine = self.lanes.join(own, depends)
        return self._run(write, taken, depends, waits, mine)

    def hold(self, taken: Taken, reason: str) -> Coroutine[Any, Any, None]:
        """Send an accepted write straight to the backlog (the mirror queue is full)."""
        self.lanes.block(taken.answered.record_key)
        return self._hold(taken, reason)

    async def _hold(self, taken: Taken, reason: str) -> None:
        await self.writelog.backlog(taken.entry_id, reason, taken.answered)
        self.counted(other(taken.primary), Outcome(Kind.BACKLOG, reason))

    async def _run(
        self,
        write: Write,
        taken: Taken,
        depends: tuple[str, ...],
        waits: list[asyncio.Future[bool]],
        mine: asyncio.Future[bool],
    ) -> None:
        target, own = other(taken.primary), taken.answered.record_key
        try:
            if waits:
                await asyncio.gather(*waits)
            if self.lanes.is_blocked([own, *depends]):
                self.lanes.block(own)
                await self._hold(taken, "blocked")
                return
            outcome = await self.mirror.apply(write, taken.primary, taken.answered.body, target)
            await self._conclude(taken, outcome, write)
            mine.set_result(outcome.kind is Kind.DONE)
        except Exception as exc:
            log.exception("mirror_crashed", store=target, route=write.match.spec.name)
            self.lanes.block(own)
            await self._hold(taken, f"internal: {type(exc).__name__}")
        finally:
            if not mine.done():
                mine.set_result(False)

    async def _conclude(self, taken: Taken, outcome: Outcome, write: Write) -> None:
        """Record a live outcome in the write log (blocking the record on a backlog)."""
        target = other(taken.primary)
        self.counted(target, outcome)
        self.mark(target, up=outcome.reason not in UNANSWERED)
        if outcome.kind is Kind.DONE:
            self.writelog.end_soon(taken.entry_id)
            return
        log.warning(
            "mirror_write_failed",
            store=target,
            route=write.match.spec.name,
            outcome=outcome.kind.value,
            reason=outcome.reason,
            status=outcome.status,
        )
        entry_id, answered = taken.entry_id, taken.answered
        if outcome.kind is Kind.DIVERGENT:
            await self.writelog.divergent(
                entry_id, outcome.status, outcome.body, outcome.reason, answered
            )
        else:
            self.lanes.block(answered.record_key)
            await self.writelog.backlog(entry_id, outcome.reason, answered)

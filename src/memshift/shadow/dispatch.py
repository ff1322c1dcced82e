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

from memshift.config.settings import MirrorSettings, StoreName, other
from memshift.ids import Id
from memshift.shadow.lanes import Lanes
from memshift.shadow.mirror import UNREAD, Kind, Mirror, Outcome, Write
from memshift.shadow.records import GLOBAL, Records
from memshift.shadow.writelog import Answered, WriteLog

log = structlog.get_logger("memshift.shadow")


def lane_keys(
    records: Records,
    created: tuple[tuple[str, Id], ...],
    *,
    one_at_a_time: bool,
    kind: str | None,
    entry_id: int,
) -> tuple[str, ...]:
    """The lanes a write the primary answered joins (see ``lanes.py``).

    One lane for all (``GLOBAL``) when a store takes one write at a time, or when the
    write's records are unknown; a create's records are those it made (or, while its
    ids have no client-side spelling yet, a lane of its own).
    """
    if one_at_a_time or records.keyless:
        return (GLOBAL,)
    if records.creates:
        return records.with_created(created).keys or (f"{kind}:?{entry_id}",)
    return records.keys


UNANSWERED = ("unreachable", "timeout")


@dataclass(slots=True)
class Taken:
    """A logged write the primary accepted: its log entry, the primary and its answer."""

    entry_id: int
    primary: StoreName
    answered: Answered
    document: Any = UNREAD  # the answer's body parsed, if it was (``document_of``)


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
        own = taken.answered.keys
        blocked = self.lanes.is_blocked(own, depends)
        if blocked or self.is_down(other(taken.primary)):
            self.lanes.block(taken.entry_id, own)
            return self._hold(taken, "blocked" if blocked else "store_down")
        waits, mine = self.lanes.join(own, depends)
        return self._run(write, taken, depends, waits, mine)

    def hold(self, taken: Taken, reason: str) -> Coroutine[Any, Any, None]:
        """Send an accepted write straight to the backlog (the mirror queue is full)."""
        self.lanes.block(taken.entry_id, taken.answered.keys)
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
        target, own = other(taken.primary), taken.answered.keys
        try:
            if waits:
                await asyncio.gather(*waits)
            if self.lanes.is_blocked(own, depends):
                self.lanes.block(taken.entry_id, own)
                await self._hold(taken, "blocked")
                return
            outcome = await self.mirror.apply(
                write, taken.primary, taken.answered.body, target, answer_doc=taken.document
            )
            await self._conclude(taken, outcome, write)
            mine.set_result(outcome.kind is Kind.DONE)
        except Exception as exc:
            log.exception("mirror_crashed", store=target, route=write.match.spec.name)
            self.lanes.block(taken.entry_id, own)
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
        elif outcome.kind is Kind.HELD:
            self.lanes.block(entry_id, answered.keys)
            await self.writelog.held(entry_id, outcome.reason, answered)
        else:
            self.lanes.block(entry_id, answered.keys)
            await self.writelog.backlog(entry_id, outcome.reason, answered)

"""Replay of the write log: crash recovery, and draining the backlog in order.

``recover`` runs once at start: every record with writes waiting is blocked, so that
new writes queue behind them. ``run_pass`` then walks the unfinished writes in log
order: a write whose primary answer was lost (``unknown``), or an ``intent`` left by a
previous run (it died before the write was mirrored or its outcome recorded), is first
sent to the primary again under its key, as its user, which applies it at most once and
answers as before; then each write is mirrored. Writes of this run still in their
request's hands (``intent``) are left to it, and later writes of their record wait.
A pass stops at the first write the secondary still cannot take, so order is kept;
writes whose ids have no pair yet are skipped with every later write of their record,
and stay for a later pass. Writes backfill took over are skipped while it
copies their record, and forgotten once the copy (which holds their effect) is made;
a write is checked to be still replay's just before it is sent, so it never lands twice.
A held write (its answer lost on a store that must not get it twice) is read back
where the profile says how (``readback``); until then, what follows its records waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import structlog

from memshift.config.settings import Settings, StoreName, other
from memshift.control.peers import Peers
from memshift.jsonpath import document_of
from memshift.shadow.dispatch import Mirroring, lane_keys
from memshift.shadow.mirror import Kind, Outcome, Write
from memshift.shadow.readback import Found, Readback
from memshift.shadow.records import GLOBAL, created, records_of
from memshift.shadow.retry import Retryable, Unsure
from memshift.shadow.routes import RouteMatch, match_route
from memshift.shadow.writelog import (
    COPIED,
    COPYING,
    HELD,
    INTENT,
    LIVE,
    UNANSWERED,
    UNKNOWN,
    Answered,
    Entry,
)

log = structlog.get_logger("memshift.shadow")


@dataclass
class PassResult:
    """What one replay pass did."""

    replayed: int = 0
    copied: int = 0
    divergent: int = 0
    skipped: int = 0
    stopped: str | None = None
    kinds: dict[str, int] = field(default_factory=dict)


def _wait_behind(skipped: set[str], *keys: str) -> None:
    """Skip every later write of ``keys`` in this pass, so that order is kept."""
    skipped.update(keys)


def _behind(row: Entry, skipped: set[str]) -> bool:
    """Whether ``row`` waits behind a write skipped earlier in this pass."""
    if not skipped:
        return False
    if GLOBAL in skipped or GLOBAL in row.keys:  # a keyless write orders everything
        return True
    return bool(skipped.intersection(row.keys) or skipped.intersection(row.depends))


class Replayer:
    """Replays what the secondary has not taken yet."""

    def __init__(
        self, mirroring: Mirroring, settings: Callable[[], Settings], peers: Peers
    ) -> None:
        self.mirroring = mirroring
        self.settings = settings
        self.peers = peers
        self.orphans: set[int] = set()  # intents a previous run left without an answer
        self.readback = Readback(mirroring.mirror)

    async def recover(self) -> int:
        """Turn the log left by a previous run into an ordered backlog; return its size."""
        await self.mirroring.writelog.recover()
        count, after = 0, 0
        while rows := await self.mirroring.writelog.unfinished(after):
            for row in rows:
                self.mirroring.lanes.block(row.id, row.keys)
                if row.state == INTENT and (row.instance == self.peers.name or self._orphan(row)):
                    self.orphans.add(row.id)
                if row.state == UNKNOWN or row.id in self.orphans:
                    self.mirroring.lanes.unsure(row.id, row.keys)
                after, count = row.id, count + 1
        if count:
            log.warning("replay_backlog_found", writes=count)
        return count

    async def run_pass(self) -> PassResult:
        """Replay unfinished writes in log order until one cannot be taken yet."""
        result = PassResult()
        skipped: set[str] = set()
        after = 0
        while rows := await self.mirroring.writelog.unfinished(after):
            for row in rows:
                after = row.id
                if _behind(row, skipped):
                    result.skipped += 1
                    continue
                if row.state == HELD and not await self._read_back(row, result):
                    _wait_behind(skipped, *row.keys)  # what follows its records waits
                    result.skipped += 1
                    continue
                if row.state == HELD:
                    continue
                if row.state == INTENT and row.id not in self.orphans and not self._orphan(row):
                    # a live write, still in its request's hands: later ones wait behind it
                    _wait_behind(skipped, *row.keys)
                    result.skipped += 1
                    continue
                stop = await self._replay(row, result, skipped)
                if stop:
                    result.stopped = stop
                    return result
        return result

    async def _read_back(self, row: Entry, result: PassResult) -> bool:
        """Settle a held write by reading it back (``readback``); whether it is settled.

        One found not applied is sent at once, in its place in the order.
        """
        settings = self.settings()
        path = unquote(row.path.partition("?")[0])
        match = match_route((*settings.routes, *settings.tools), row.method, path)
        if match is None or not match.spec.creates:
            return False
        write = Write(match, row.method, row.path, row.body, row.idem_key, row.user)
        found = await self.readback.settle(row, write, settings)
        if found is Found.UNSURE:
            return False
        if found is Found.APPLIED:
            await self.mirroring.writelog.forget(row.id)
            self.mirroring.lanes.release(row.id)
            result.replayed += 1
            return True
        await self.mirroring.writelog.unheld(row.id)
        return False

    def _orphan(self, row: Entry) -> bool:
        """Whether an intent was left by an instance that is gone (none alive owns it)."""
        return row.instance != self.peers.name and not self.peers.is_alive(row.instance)

    async def _replay(self, row: Entry, result: PassResult, skipped: set[str]) -> str | None:
        path = unquote(row.path.partition("?")[0])
        settings = self.settings()
        match = match_route((*settings.routes, *settings.tools), row.method, path)
        wal = self.mirroring.writelog
        if match is None:
            await wal.divergent(row.id, None, b"", "no configured route matches any more")
            self.mirroring.lanes.release(row.id)
            result.divergent += 1
            return None
        if row.state == COPIED:  # backfill's copy of the record holds this write
            await wal.forget(row.id)
            self.mirroring.lanes.release(row.id)
            result.copied += 1
            return None
        if row.state == COPYING:  # backfill is copying the record: wait behind it
            _wait_behind(skipped, *row.keys, *row.depends)
            result.skipped += 1
            return None
        write = Write(match, row.method, row.path, row.body, row.idem_key, row.user)
        primary: StoreName = "new" if row.primary_store == "new" else "legacy"
        answer = row.primary_body or b""
        own = row.keys
        if row.state in UNANSWERED:
            settled = await self._settle(row, match, write, primary)
            if settled == HELD:
                _wait_behind(skipped, *own)
                return None
            if isinstance(settled, str):
                return settled
            if settled is None:
                return None
            answer, own = settled
        outcome = await self.mirroring.mirror.apply(
            write, primary, answer, other(primary), attempts=1, still=lambda: self._still(row.id)
        )
        return await self._conclude(row, own, outcome, result, skipped, primary)

    async def _settle(
        self, row: Entry, match: RouteMatch, write: Write, primary: StoreName
    ) -> tuple[bytes, tuple[str, ...]] | str | None:
        """Settle at the primary a write whose answer was lost: its answer and records
        (it waits for the secondary now), ``HELD``, None (refused: forgotten), or why
        to stop."""
        wal = self.mirroring.writelog
        resolved = await self._resolve(write, row, primary)
        if resolved == HELD:
            self.orphans.discard(row.id)
            self.mirroring.lanes.sure(row.id)
            return HELD
        if isinstance(resolved, str):
            return resolved
        if resolved is None:
            await wal.forget(row.id)
            self.mirroring.lanes.release(row.id)
            return None
        own = row.keys
        if not own:  # a create: its records are known from its answer
            settings = self.settings()
            forms = settings.forms
            made = created(match.spec, primary, document_of(resolved), forms)
            records = records_of(match, document_of(row.body), forms)
            own = lane_keys(
                records,
                made,
                one_at_a_time=settings.one_at_a_time(primary),
                kind=match.spec.creates,
                entry_id=row.id,
            )
        await wal.resolved(row.id, Answered(own, 200, resolved))
        self.orphans.discard(row.id)
        self.mirroring.lanes.sure(row.id)
        return resolved, own

    async def settle_unsure(self, entries: list[int]) -> bool:
        """Before a later write of their records goes to the primary: settle there, in
        log order, the writes ``entries`` whose answer was lost (their key makes the
        primary apply each at most once); whether none is left unsettled.

        Sent again only later, on a replay pass, such a write would reach the primary
        after writes its client made since, and undo them there alone.
        """
        settings = self.settings()
        for row in await self.mirroring.writelog.entries(entries):
            if row.state not in UNANSWERED:
                self.mirroring.lanes.sure(row.id)
                continue
            path = unquote(row.path.partition("?")[0])
            match = match_route((*settings.routes, *settings.tools), row.method, path)
            if match is None:
                return False
            write = Write(match, row.method, row.path, row.body, row.idem_key, row.user)
            primary: StoreName = "new" if row.primary_store == "new" else "legacy"
            if isinstance(await self._settle(row, match, write, primary), str):
                return False
        known = {row.id for row in await self.mirroring.writelog.entries(entries)}
        for entry in set(entries) - known:  # finished meanwhile
            self.mirroring.lanes.sure(entry)
        return True

    async def _still(self, entry_id: int) -> bool:
        """Whether the write is still replay's to send (backfill did not take it over)."""
        return await self.mirroring.writelog.state_of(entry_id) in LIVE

    async def _resolve(self, write: Write, row: Entry, primary: StoreName) -> bytes | str | None:
        """Send an intent to the primary again; its answer, None if refused, or why to stop.

        A write the primary must not get twice is held instead (``HELD``).
        """
        mirror = self.mirroring.mirror
        if not write.match.spec.repeatable(mirror.stores()[primary]):
            await self.mirroring.writelog.held(row.id, "primary: outcome unknown")
            return HELD
        request = await mirror.request(write, primary, None)
        if request is None:
            return "unmapped id at the primary"
        try:
            answer = await mirror.attempt(primary, request, write.match.spec, "replay", 1)
        except (Retryable, Unsure) as exc:
            return f"primary: {exc.reason}"
        return answer.body if 200 <= answer.status < 300 else None

    async def _conclude(
        self,
        row: Entry,
        own: tuple[str, ...],
        outcome: Outcome,
        result: PassResult,
        skipped: set[str],
        primary: StoreName,
    ) -> str | None:
        wal, lanes = self.mirroring.writelog, self.mirroring.lanes
        self.mirroring.counted(other(primary), outcome)
        self.mirroring.mark(other(primary), up=outcome.kind is not Kind.BACKLOG)
        result.kinds[outcome.kind.value] = result.kinds.get(outcome.kind.value, 0) + 1
        if outcome.kind is Kind.DONE:
            await wal.forget(row.id)
            lanes.release(row.id)
            result.replayed += 1
        elif outcome.kind is Kind.DIVERGENT:
            await wal.divergent(row.id, outcome.status, outcome.body, outcome.reason)
            lanes.release(row.id)
            result.divergent += 1
        elif outcome.kind is Kind.UNMAPPED:
            _wait_behind(skipped, *own, *row.depends)
            result.skipped += 1
        elif outcome.kind is Kind.HELD:
            await wal.held(row.id, outcome.reason)
            _wait_behind(skipped, *own)
            result.skipped += 1
        else:
            await wal.backlog(row.id, outcome.reason)
            return f"secondary: {outcome.reason}"
        return None

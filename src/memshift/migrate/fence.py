"""What the write log says about records backfill is about to copy, while traffic flows.

Backfill reads a batch of records from legacy between two looks at the write log:
``before`` (taken before the reads) and ``after`` (taken after them, once writes whose
primary answer was still unknown have settled). A record is then:

- ``copy``: no write of it is unfinished; the copy is made as read.
- ``mirror``: its create is still on its way to new through the log; the mirror or
  replay will make it, so backfill leaves it alone.
- ``adopt``: its only unfinished writes are in the backlog, waiting for a pair that
  only backfill can make, and all were applied by legacy before the reads (accepted
  or backlog in ``before``). The copy holds their effect, so backfill takes them over
  and they are never applied twice.
- ``in_flight``: a write of it is on its way right now; it is tried again later.

A write logged after the reads cannot be in the copy, and cannot be the create of a
record the reads saw: it is mirrored once the pair exists, as usual.

Backlog writes of a record legacy no longer has and new never got (made and deleted
before backfill reached it) are ``moot``: backfill drops them, or they would wait for
a pair for ever.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from memshift.config.settings import RouteSpec
from memshift.shadow.routes import match_route
from memshift.shadow.writelog import ACCEPTED, BACKLOG, UNANSWERED, WriteLog

SETTLE_S = 5.0


@dataclass(frozen=True)
class Pending:
    """One unfinished write, as backfill sees it."""

    id: int
    state: str
    record_key: str | None
    creates: bool


class Fence:
    """Looks at the write log around one batch of reads."""

    def __init__(self, log: WriteLog, routes: tuple[RouteSpec, ...]) -> None:
        self.log = log
        self.routes = routes

    async def look(self, keys: Iterable[str]) -> list[Pending]:
        """Return the unfinished writes of ``keys``, and every create whose record is unknown."""
        rows = await self.log.unfinished_of(sorted(set(keys)))
        return [Pending(i, state, key, self._creates(m, p)) for i, state, key, m, p in rows]

    def _creates(self, method: str, path: str) -> bool:
        match = match_route(self.routes, method, unquote(path.partition("?")[0]))
        return match is not None and match.spec.creates is not None

    async def settled(
        self, keys: Iterable[str], timeout_s: float = SETTLE_S
    ) -> tuple[list[Pending], frozenset[int]]:
        """Look again once creates that were unanswered right after the reads are answered.

        Such a create may have made one of the records just read; its answer names it.
        Creates logged later cannot have. Return the look, and the creates still
        unanswered after ``timeout_s`` (their proxy died): the records they might have
        made are tried again later.
        """
        keys = list(keys)
        found = await self.look(keys)
        unknown = _unanswered(found)
        deadline = time.monotonic() + timeout_s
        while unknown and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            found = await self.look(keys)
            unknown &= _unanswered(found)
        return found, frozenset(unknown)

    async def backlog_keys(self) -> list[str]:
        """Return the records that have writes in the backlog."""
        return await self.log.backlog_keys()


def _unanswered(found: list[Pending]) -> set[int]:
    return {p.id for p in found if p.state in UNANSWERED and p.record_key is None}


def verdict(
    key: str, before: list[Pending], after: list[Pending], unknown: frozenset[int]
) -> tuple[str, tuple[int, ...]]:
    """Decide what backfill does with the record ``key``; with the writes it adopts."""
    if unknown:
        return "in_flight", ()  # an unanswered create might be this record's
    mine = [p for p in after if p.record_key == key]
    if not mine:
        return "copy", ()
    if any(p.creates for p in mine):
        return "mirror", ()
    if _waiting_since_before(mine, before):
        return "adopt", tuple(p.id for p in mine)
    return "in_flight", ()


def moot(
    key: str, before: list[Pending], after: list[Pending], unknown: frozenset[int]
) -> tuple[int, ...]:
    """Return the backlog writes of a record that legacy no longer has and new never had.

    They were all applied by legacy before it was found gone, the last of them the
    delete: nothing is left to copy, so there is nothing to apply. Empty while any of
    them is still moving.
    """
    mine = [p for p in after if p.record_key == key]
    if unknown or not _waiting_since_before(mine, before):
        return ()
    return tuple(p.id for p in mine)


def _waiting_since_before(mine: list[Pending], before: list[Pending]) -> bool:
    """Whether every write is in the backlog now and was applied by legacy before the reads."""
    applied = {p.id for p in before if p.state in (ACCEPTED, BACKLOG)}
    return all(p.state == BACKLOG and p.id in applied for p in mine)

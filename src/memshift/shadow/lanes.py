"""Per-record order of mirrored writes.

Each record (``kind:legacy id``) has a lane: a write to it is sent to the primary
under the record's lock, then joins the lane, so writes reach the secondary in the
order the primary applied them. A write also waits for the lanes of the records it
refers to (the memory a relation links, the context a memory is in), so it never
reaches the secondary before them. Writes to unrelated records run in parallel.

A record whose write went to the durable backlog is *blocked*: its later writes go to
the backlog too, behind it, until replay has drained them in order.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from functools import partial


class Lanes:
    """Lanes, locks and blocks of records, for one proxy instance."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[bool]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.blocked: Counter[str] = Counter()
        self.touched: Counter[str] = Counter()
        self.generation = 0

    @asynccontextmanager
    async def lock(self, key: str | None) -> AsyncIterator[None]:
        """Hold ``key``'s lock (no lock for None): one write at a time per record."""
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def join(
        self, own: str | None, depends: Iterable[str]
    ) -> tuple[list[asyncio.Future[bool]], asyncio.Future[bool]]:
        """Join ``own``'s lane; return what to wait for first, and this write's own future.

        The future is to be resolved True when the write reached the secondary.
        """
        waits = [self._tails[k] for k in {own, *depends} if k is not None and k in self._tails]
        mine: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.generation += 1
        if own is not None:
            self.touched[own] += 1
        if own is not None:
            self._tails[own] = mine
            mine.add_done_callback(partial(self._leave, own))
        return waits, mine

    def _leave(self, key: str, future: asyncio.Future[bool]) -> None:
        if self._tails.get(key) is future:
            del self._tails[key]

    def is_blocked(self, keys: Iterable[str | None]) -> bool:
        """Return whether any of ``keys`` has writes waiting in the backlog."""
        return any(self.blocked[k] > 0 for k in keys if k is not None)

    def block(self, key: str | None) -> None:
        """Count one more backlog write of ``key``."""
        if key is not None:
            self.blocked[key] += 1

    def release(self, key: str | None) -> None:
        """Count one backlog write of ``key`` as replayed."""
        if key is not None and self.blocked[key] > 0:
            self.blocked[key] -= 1
            if not self.blocked[key]:
                del self.blocked[key]

    def snapshot(self, key: str | None) -> tuple[int, bool]:
        """Return how far writes to ``key`` (to anything, for None) went, and if one is pending."""
        if key is None:
            return self.generation, bool(self._tails or self._locks or self.blocked)
        pending = key in self._tails or key in self._locks or self.blocked[key] > 0
        return self.touched[key], pending

    def settled(self, key: str | None, before: tuple[int, bool]) -> bool:
        """Whether no write to ``key`` was pending at ``before`` or happened since."""
        now = self.snapshot(key)
        return not before[1] and not now[1] and now[0] == before[0]

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
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from functools import partial

_NO_LOCK: AbstractAsyncContextManager[None] = nullcontext()
TOUCHED_MAX = 100_000  # records whose last write is remembered (about 10 MB)


class Lanes:
    """Lanes, locks and blocks of records, for one proxy instance."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[bool]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.blocked: Counter[str] = Counter()
        # The generation of each record's last write, oldest first, bounded: a proxy
        # lives for weeks and sees every record. What falls off the end is forgotten.
        self.touched: dict[str, int] = {}
        self.forgotten = 0  # the newest generation forgotten
        self.generation = 0

    def lock(self, key: str | None) -> AbstractAsyncContextManager[None]:
        """Hold ``key``'s lock (no lock for None): one write at a time per record."""
        return _NO_LOCK if key is None else self._held(key)

    @asynccontextmanager
    async def _held(self, key: str) -> AsyncIterator[None]:
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
            self.touched.pop(own, None)
            self.touched[own] = self.generation
            if len(self.touched) > TOUCHED_MAX:
                oldest = next(iter(self.touched))
                self.forgotten = self.touched.pop(oldest)
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
        """Return the generation now and whether a write to ``key`` (any, for None) is pending."""
        if key is None:
            return self.generation, bool(self._tails or self._locks or self.blocked)
        return self.generation, key in self._tails or key in self._locks or self.blocked[key] > 0

    def settled(self, key: str | None, before: tuple[int, bool]) -> bool:
        """Whether no write to ``key`` was pending at ``before`` or happened since.

        A record whose last write was forgotten since counts as written (not settled).
        """
        at, was_pending = before
        if was_pending or self.snapshot(key)[1]:
            return False
        if key is None:
            return self.generation == at
        last = self.touched.get(key)
        return (self.forgotten if last is None else last) <= at

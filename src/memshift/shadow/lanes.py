"""The order of mirrored writes, in one proxy instance.

Each record (``kind:id``) has a lane: a write to it is sent to the primary under the
record's lock, then joins the record's lane, so writes reach the secondary in the
order the primary applied them. A write that changes several records holds all their
locks (taken in one order, so two such writes never wait for each other) and joins
all their lanes. A write also waits for the lanes of the records it refers to (the
memory a relation links, the context a memory is in), so it never reaches the
secondary before them. Writes to unrelated records run in parallel.

A write whose records are unknown (*keyless*) is a barrier: it waits for every write
before it and every write after it waits for it; while anything waits in the backlog,
it waits there too. A store that takes one write at a time (``write_order =
"global"``) has every write in one lane, ``GLOBAL``.

A record whose write went to the durable backlog is *blocked*: its later writes go to
the backlog too, behind it, until replay has drained them in order. A keyless write in
the backlog blocks every record.
"""

from __future__ import annotations

import asyncio
from collections import Counter, OrderedDict
from collections.abc import Iterable
from functools import partial

from memshift.runtime import ServingLoop
from memshift.shadow.records import GLOBAL

TOUCHED_MAX = 100_000  # records whose last write is remembered (about 10 MB)


class Lanes:
    """Lanes, locks and blocks of records, for one proxy instance (on one event loop)."""

    def __init__(self) -> None:
        self._barrier = _Barrier()
        self._tails: dict[str, asyncio.Future[bool]] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self.blocked: Counter[str] = Counter()
        self._blocks: dict[int, tuple[str, ...]] = {}  # backlog write → the keys it blocks
        # write whose answer from the primary was lost → its records: a later write of
        # them must not reach the primary before this one's outcome is settled there
        self._unsure: dict[int, tuple[str, ...]] = {}
        # The generation of each record's last write, oldest first, bounded: a proxy
        # lives for weeks and sees every record. What falls off the end is forgotten.
        # Ordered: moving a key to the end and dropping the oldest take constant time
        # (a dict's first key is found by scanning past every key removed before it).
        self.touched: OrderedDict[str, int] = OrderedDict()
        self.forgotten = 0  # the newest generation forgotten
        self.generation = 0
        self._loop = ServingLoop()

    def lock(self, keys: Iterable[str], *, barrier: bool = False) -> Held:
        """Hold the locks of ``keys`` (``async with``): one write at a time per record (a
        create holds none). A ``barrier`` (a keyless write) holds every record: it waits
        for the writes holding locks, and writes that come later wait for it."""
        return Held(self, sorted(set(keys)), barrier)

    def join(
        self, own: tuple[str, ...], depends: Iterable[str]
    ) -> tuple[list[asyncio.Future[bool]], asyncio.Future[bool]]:
        """Join the lanes of ``own`` (keyless: every lane); return what to wait for first,
        and this write's own future, to be resolved True once it reached the secondary."""
        if own and GLOBAL not in own:
            keys = {*own, *depends, GLOBAL}
            waits = [self._tails[k] for k in keys if k in self._tails]
        else:  # one write at a time, or a keyless one: behind every write before it
            waits = list(set(self._tails.values()))
            own = (GLOBAL,)
        mine: asyncio.Future[bool] = self._loop().create_future()
        self.generation += 1
        for key in own:
            self.touched[key] = self.generation
            self.touched.move_to_end(key)
            self._tails[key] = mine
            mine.add_done_callback(partial(self._leave, key))
        while len(self.touched) > TOUCHED_MAX:
            self.forgotten = self.touched.popitem(last=False)[1]
        return waits, mine

    def _leave(self, key: str, future: asyncio.Future[bool]) -> None:
        if self._tails.get(key) is future:
            del self._tails[key]

    def is_blocked(self, own: tuple[str, ...], depends: Iterable[str] = ()) -> bool:
        """Whether a write to ``own`` (``GLOBAL`` or none: to anything) must join the backlog."""
        blocked = self.blocked  # no key is kept at zero
        if not blocked or not own or GLOBAL in own:
            return bool(blocked)
        return any(k in blocked for k in (*own, *depends, GLOBAL))

    def block(self, entry: int, keys: Iterable[str]) -> None:
        """Block ``keys`` while the write ``entry`` waits in the backlog (a keyless
        write's key is ``GLOBAL``; a create not answered yet blocks nothing)."""
        self.release(entry)
        held = tuple(set(keys))
        if held:
            self._blocks[entry] = held
            self.blocked.update(held)

    def unsure(self, entry: int, keys: Iterable[str]) -> None:
        """The primary's answer to ``entry`` was lost: it may yet apply it (on replay)."""
        held = tuple(set(keys))
        if held:
            self._unsure[entry] = held

    def sure(self, entry: int) -> None:
        """The primary's outcome of ``entry`` is settled."""
        self._unsure.pop(entry, None)

    def unsure_of(self, keys: Iterable[str]) -> list[int]:
        """Writes, in log order, whose outcome at the primary is not settled and that a
        write of ``keys`` must not overtake there (``GLOBAL``: every one of them)."""
        if not self._unsure:  # the usual case, asked on every write
            return []
        wanted = set(keys)
        everything = not wanted or GLOBAL in wanted
        return sorted(
            entry
            for entry, held in self._unsure.items()
            if everything or GLOBAL in held or wanted.intersection(held)
        )

    def release(self, entry: int) -> None:
        """The write ``entry`` left the backlog: lift what it blocked."""
        self._unsure.pop(entry, None)
        for key in self._blocks.pop(entry, ()):
            self.blocked[key] -= 1
            if self.blocked[key] <= 0:
                del self.blocked[key]

    def _pending(self, key: str) -> bool:
        return key in self._tails or key in self._locks or self.blocked[key] > 0

    def waiting(self, key: str | None) -> bool:
        """Whether a write to ``key`` (any, for None) waits in the backlog now: the
        other store does not have the record as the primary has it yet."""
        if key is None:
            return any(n > 0 for n in self.blocked.values())
        return self.blocked[key] > 0 or self.blocked[GLOBAL] > 0

    def snapshot(self, key: str | None) -> tuple[int, bool]:
        """Return the generation now and whether a write to ``key`` (any, for None) is pending."""
        if key is None:
            return self.generation, bool(self._tails or self._locks or self.blocked)
        return self.generation, self._pending(key) or self._pending(GLOBAL)

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
        if (self.forgotten if last is None else last) > at:
            return False
        last_global = self.touched.get(GLOBAL)  # never evicted while writes go to it
        return last_global is None or last_global <= at


class Held:
    """The locks of one write (``Lanes.lock``), held inside ``async with``.

    Written out rather than made of generator-based context managers: every write
    takes it, and a free lock (a create's, say) is taken without awaiting anything.
    """

    __slots__ = ("_acquired", "_barrier", "_keys", "_lanes")

    def __init__(self, lanes: Lanes, keys: list[str], barrier: bool) -> None:
        self._lanes = lanes
        self._keys = keys
        self._barrier = barrier
        self._acquired: list[str] = []

    async def __aenter__(self) -> None:
        gate = self._lanes._barrier
        if self._barrier:
            await gate.enter_exclusive()
        elif not gate.try_shared():
            await gate.wait_shared()
        try:
            for key in self._keys:
                await self._take(key)
        except BaseException:
            await self._leave()
            raise

    async def _take(self, key: str) -> None:
        locks = self._lanes._locks
        lock, users = locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        locks[key] = (lock, users + 1)
        try:
            await lock.acquire()
        except BaseException:  # cancelled while another write holds it: not ours
            self._drop(key, release=False)
            raise
        self._acquired.append(key)

    def _drop(self, key: str, *, release: bool) -> None:
        locks = self._lanes._locks
        lock, users = locks[key]
        if release:
            lock.release()
        if users <= 1:
            del locks[key]
        else:
            locks[key] = (lock, users - 1)

    async def __aexit__(self, *_exc: object) -> None:
        await self._leave()

    async def _leave(self) -> None:
        while self._acquired:
            self._drop(self._acquired.pop(), release=True)
        gate = self._lanes._barrier
        if self._barrier:
            await gate.leave_exclusive()
        elif gate.leave_shared():
            await gate.notify()


class _Barrier:
    """A readers-writer lock: many keyed writes share it, a keyless one holds it alone.

    A keyless write waiting for it stops later keyed writes from taking it, so a
    barrier is never starved.
    """

    def __init__(self) -> None:
        self._shared = 0
        self._exclusive = False
        self._waiting_exclusive = 0
        self._changed = asyncio.Condition()

    def try_shared(self) -> bool:
        """Take a shared hold now if nothing keeps it (the usual case); say whether."""
        if self._exclusive or self._waiting_exclusive:
            return False
        self._shared += 1
        return True

    async def wait_shared(self) -> None:
        """Take a shared hold once no barrier holds it or waits for it."""
        async with self._changed:
            await self._changed.wait_for(lambda: not (self._exclusive or self._waiting_exclusive))
            self._shared += 1

    def leave_shared(self) -> bool:
        """Give a shared hold back; return whether a waiting barrier must be told."""
        self._shared -= 1
        return bool(self._waiting_exclusive and not self._shared)

    async def enter_exclusive(self) -> None:
        """Hold it alone, once every shared hold and barrier before this one left."""
        self._waiting_exclusive += 1
        try:
            async with self._changed:
                await self._changed.wait_for(lambda: not (self._exclusive or self._shared))
                self._exclusive = True
        finally:
            self._waiting_exclusive -= 1

    async def leave_exclusive(self) -> None:
        self._exclusive = False
        await self.notify()

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

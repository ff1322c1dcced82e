"""The id map: which id each store gave one record, per resource kind.

Clients always see legacy's ids. Ids are opaque (``ids.py``): integers or strings,
always in their canonical spelling, kept as their JSON text. A pair is written when a
create is mirrored (or a record backfilled); writing a pair replaces any pair of
either id, so a store that gives a deleted record's id to a new record leaves no stale
pair behind (writes to one id reach the secondary in order: the delete first). Pairs
are cached in memory, up to ``cache_size`` per direction, and a cache miss reads the
state db. A repair that re-creates a lost copy replaces the pair and bumps the map's
generation in the state db, and ``sync`` (run by every proxy each second) then drops
the cache.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import Connection, select

from memshift.config.settings import StoreName
from memshift.database import Database, driver_execute
from memshift.ids import Id, decode, encode
from memshift.statedb import id_map, load_doc, save_doc

_BATCH = 500
FRESH_KEPT = 10_000
Write = Callable[[Callable[[Connection], Any]], Awaitable[Any]]
Post = Callable[[Callable[[Connection], Any], str], None]
PostRow = Callable[[str, tuple[Any, ...]], None]


# On every mirrored create: straight to the driver. A pair of either id goes first (a
# store that reuses ids gave one of them to a record deleted since).
_UNPAIR = 'DELETE FROM id_map WHERE "kind" = ? AND ("legacy_id" = ? OR "new_id" = ?)'
_PAIR = 'INSERT INTO id_map ("kind", "legacy_id", "new_id") VALUES (?, ?, ?)'
# SQLite's one statement for both: REPLACE drops each row clashing on either unique key.
_REPLACE = 'INSERT OR REPLACE INTO id_map ("kind", "legacy_id", "new_id") VALUES (?, ?, ?)'


class IdMap:
    """Pairs of legacy and new ids, backed by the state db, cached in memory."""

    def __init__(
        self,
        db: Database,
        cache_size: int = 200_000,
        *,
        write: Write | None = None,
        post: Post | None = None,
        post_row: PostRow | None = None,
    ) -> None:
        """``write`` and ``post`` commit a pair (the proxy's write log's group commit;
        the state db by default): ``write`` waits for the commit, ``post`` does not.
        ``post_row``, on SQLite: as ``post``, the pairs of a commit in one statement."""
        self.db = db
        self.cache_size = cache_size
        self.write: Write = write or db.write
        self.post = post
        self.post_row = post_row if db.is_sqlite else None
        self._fresh: deque[tuple[str, Id, Id | None]] = deque(maxlen=FRESH_KEPT)
        self.made = 0  # pairs recorded by this process: a cursor for ``fresh``
        # Ordered: the oldest pair is dropped first, in constant time (a dict's first
        # key is found by scanning past every key removed before it).
        self._to_new: OrderedDict[tuple[str, Id], Id] = OrderedDict()
        self._to_legacy: OrderedDict[tuple[str, Id], Id] = OrderedDict()
        self._generation = 0  # a generation other than the state db's drops the cache

    def cached(self, kind: str, legacy_id: Id) -> Id | None:
        """The new id paired with ``legacy_id`` if this process has it in memory."""
        return self._to_new.get((kind, legacy_id))

    def remember(self, kind: str, legacy_id: Id, new_id: Id | None) -> None:
        """Cache the pair (legacy_id, new_id) of one ``kind`` (None: the pair is gone)."""
        if new_id is None:
            old = self._to_new.pop((kind, legacy_id), None)
            if old is not None:
                self._to_legacy.pop((kind, old), None)
            return
        stale_new = self._to_new.pop((kind, legacy_id), None)
        if stale_new is not None:
            self._to_legacy.pop((kind, stale_new), None)
        stale_legacy = self._to_legacy.pop((kind, new_id), None)
        if stale_legacy is not None:
            self._to_new.pop((kind, stale_legacy), None)
        for cache, key, value in (
            (self._to_new, legacy_id, new_id),
            (self._to_legacy, new_id, legacy_id),
        ):
            if len(cache) >= self.cache_size:
                cache.popitem(last=False)
            cache[(kind, key)] = value

    async def sync(self) -> bool:
        """Drop the cache if a repair replaced pairs since the last call; return whether."""
        generation = await self.db.read(read_generation)
        if generation == self._generation:
            return False
        self._generation = generation
        self._to_new.clear()
        self._to_legacy.clear()
        return True

    async def record(self, kind: str, legacy_id: Id, new_id: Id, *, wait: bool = True) -> None:
        """Store the pair (legacy_id, new_id) of one ``kind``, replacing any of either id.

        With ``wait=False`` and a ``post`` hook (the write log's ordered group commit),
        the pair is usable here at once and committed with the operations posted
        after it: the write it comes from is forgotten no sooner than it is kept.
        """
        old, new = encode(legacy_id), encode(new_id)

        def write(conn: Connection) -> None:
            driver_execute(conn, _UNPAIR, (kind, old, new))
            driver_execute(conn, _PAIR, (kind, old, new))

        if not wait and self.post_row is not None:
            self.post_row(_REPLACE, (kind, old, new))  # in posting order, as ``write`` would
        else:
            await self._change(write, "id_pair", wait)
        self.remember(kind, legacy_id, new_id)
        self._fresh.append((kind, legacy_id, new_id))
        self.made += 1

    async def _change(self, op: Callable[[Connection], object], what: str, wait: bool) -> None:
        if not wait and self.post is not None:
            self.post(op, what)
        else:
            await self.write(op)

    def fresh(self, seen: int) -> list[tuple[str, Id, Id | None]]:
        """Return the pairs this process recorded after the first ``seen`` (the newest
        ``FRESH_KEPT`` at most: older ones are in the state db by then)."""
        return list(self._fresh)[max(0, len(self._fresh) - (self.made - seen)) :]

    async def translate(
        self, kind: str, ids: Iterable[Id], source: StoreName, target: StoreName
    ) -> dict[Id, Id]:
        """Return ``{id in source: id in target}`` for the ids that are mapped.

        The ids are canonical (``IdForms.canonical``)."""
        wanted = set(ids)
        if source == target:
            return {i: i for i in wanted}
        cache = self._to_new if target == "new" else self._to_legacy
        found = {i: cache[(kind, i)] for i in wanted if (kind, i) in cache}
        missing = [encode(i) for i in wanted - found.keys()]
        if missing:
            rows = await self.db.read(lambda conn: self._lookup(conn, kind, missing, target))
            for legacy_text, new_text in rows:
                legacy_id, new_id = decode(legacy_text), decode(new_text)
                self.remember(kind, legacy_id, new_id)
                found[legacy_id if target == "new" else new_id] = (
                    new_id if target == "new" else legacy_id
                )
        return found

    @staticmethod
    def _lookup(conn: Connection, kind: str, ids: list[str], target: str) -> list[Any]:
        column = id_map.c.legacy_id if target == "new" else id_map.c.new_id
        rows: list[Any] = []
        for at in range(0, len(ids), _BATCH):
            rows += conn.execute(
                select(id_map.c.legacy_id, id_map.c.new_id).where(
                    id_map.c.kind == kind, column.in_(ids[at : at + _BATCH])
                )
            ).all()
        return rows


GENERATION = "id_map.generation"


def read_generation(conn: Connection) -> int:
    """Return how many times a repair replaced pairs."""
    return int(load_doc(conn, GENERATION) or 0)


def bump_generation(conn: Connection) -> None:
    """Tell every proxy's id map that pairs were replaced."""
    save_doc(conn, GENERATION, read_generation(conn) + 1)

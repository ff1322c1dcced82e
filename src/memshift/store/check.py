"""``memshift store check``: prove a store's data is whole.

For the ``new`` engine: every blob decodes (chunks complete and in order) to bytes whose
SHA-256 is its address, sizes and reference counts are right, and no blob, chunk or
memory points at nothing. For ``legacy``: every memory holds its content and size. For
both: the search index holds every memory and nothing else. Blobs are read one at a time.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import zstandard
from sqlalchemy import Connection, func, select

from memshift.database import Database
from memshift.store import search
from memshift.store.content import read_blob
from memshift.store.schema import blob_chunks, blobs, engine_name, memories


def _check_blob(conn: Connection, row: object) -> list[str]:
    digest: str = row.hash  # type: ignore[attr-defined]
    try:
        data = read_blob(conn, digest)
    except (LookupError, ValueError, zstandard.ZstdError) as exc:
        return [f"blob {digest}: cannot be read: {exc}"]
    found: list[str] = []
    if hashlib.sha256(data).hexdigest() != digest:
        found.append(f"blob {digest}: content does not match its hash")
    if len(data) != row.size:  # type: ignore[attr-defined]
        found.append(f"blob {digest}: size {len(data)} but recorded {row.size}")  # type: ignore[attr-defined]
    return found


def check_blobs(conn: Connection) -> list[str]:
    """Return the problems found in the ``new`` engine's content."""
    problems: list[str] = []
    refs = Counter(
        {
            str(h): int(n)
            for h, n in conn.execute(
                select(memories.c.content_hash, func.count()).group_by(memories.c.content_hash)
            )
        }
    )
    if refs.pop("None", 0) or None in refs:
        problems.append("memories without content_hash exist")
    known: set[str] = set()
    for row in conn.execute(select(blobs.c.hash, blobs.c.size, blobs.c.refcount)).all():
        known.add(row.hash)
        problems += _check_blob(conn, row)
        if refs.get(row.hash, 0) == 0:
            problems.append(f"blob {row.hash}: orphaned (no memory uses it)")
        elif refs[row.hash] != row.refcount:
            problems.append(
                f"blob {row.hash}: refcount {row.refcount} but {refs[row.hash]} memories use it"
            )
    problems += [f"memories refer to missing blob {h}" for h in refs if h not in known]
    chunk_hashes = conn.execute(select(blob_chunks.c.hash).distinct()).scalars()
    problems += [f"chunks of missing blob {h}" for h in chunk_hashes if h not in known]
    return problems


def check_plain(conn: Connection) -> list[str]:
    """Return the problems found in the ``legacy`` engine's content."""
    problems = []
    rows = conn.execution_options(yield_per=500).execute(
        select(memories.c.id, memories.c.size, memories.c.content)
    )
    for row in rows:
        if row.content is None:
            problems.append(f"memory {row.id}: content is missing")
        elif len(row.content.encode()) != row.size:
            problems.append(f"memory {row.id}: size {row.size} does not match its content")
    return problems


def check_index(conn: Connection) -> list[str]:
    """Return what is wrong with the search index: entries of memories that are gone,
    memories it lacks."""
    found = []
    key = "rowid" if conn.dialect.name == "sqlite" else "memory_id"
    indexed = f"SELECT {key} FROM {search.TABLE}"
    dangling = conn.exec_driver_sql(
        f"SELECT count(*) FROM ({indexed}) AS i WHERE {key} NOT IN (SELECT id FROM memories)"
    ).scalar_one()
    if dangling:
        found.append(f"search index: {dangling} entries refer to missing memories")
    missing = conn.exec_driver_sql(
        f"SELECT count(*) FROM memories WHERE id NOT IN ({indexed})"
    ).scalar_one()
    if missing:
        found.append(f"search index: {missing} memories are not indexed")
    return found


def check_store(db: Database) -> tuple[str | None, list[str]]:
    """Return the store's engine and every problem found, in one consistent read."""
    engine = engine_name(db)

    def run(conn: Connection) -> list[str]:
        found = check_blobs(conn) if engine == "new" else check_plain(conn)
        return found + check_index(conn)

    return engine, db.read_sync(run)

"""Keyword search done by the database: SQLite's FTS5, PostgreSQL's full-text search.

A memory's title and (decompressed) content are indexed when it is written, so search
finds words inside compressed content too; the database ranks and counts the matches.

- SQLite: a contentless FTS5 table (``memory_search``, rowid = memory id, the
  ``unicode61`` tokenizer) holds only the index, not a second copy of the text;
  ranked by ``bm25`` with the title weighing ``TITLE_WEIGHT`` times the content.
  A contentless index forgets a memory when told the words it indexed, so unindexing
  takes the memory's title and content as they were indexed.
- PostgreSQL: a ``memory_search`` table of ``tsvector`` documents (the ``simple``
  configuration: words lower-cased, no stemming, as FTS5's) under a GIN index; the
  title is weight A, the content weight D, ranked by ``ts_rank``.

A query matches memories that contain every query word. Both engines on one database
index the same text the same way, so they answer a query with the same ids in the same
order (ties go to the older, smaller id); the two databases rank by their own formula.
The content a PostgreSQL document is made of is cut to ``PG_INDEXED_CHARS`` (a
``tsvector`` holds at most 1 MiB); FTS5 indexes all of it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    bindparam,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)

from memshift.database import Database, driver_execute
from memshift.store.content import ContentStore
from memshift.store.schema import memories

_WORD = re.compile(r"[^\W_]+")
TITLE_WEIGHT = 3
MIN_TERM, MAX_TERM = 2, 64
SNIPPET_CHARS = 160
PG_INDEXED_CHARS = 256 * 1024
TABLE = "memory_search"


def terms_of(text: str) -> Counter[str]:
    """Return the words of ``text`` a query looks for, with their counts."""
    return Counter(word[:MAX_TERM] for word in _WORD.findall(text.lower()) if len(word) >= MIN_TERM)


def _sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


# Tables of earlier stores' hand-made index, dropped once this one is built.
_RETIRED = ("search_terms", "counters")
_BATCH = 500


def prepare(db: Database, content: ContentStore) -> int:
    """Create the search index if it is missing, indexing the memories already there
    (a store made before it); return how many were indexed."""
    with db.engine.begin() as conn:
        if not _create_index(conn):
            return 0
        for name in _RETIRED:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        done, after = 0, 0
        while True:
            rows = conn.execute(
                select(memories).where(memories.c.id > after).order_by(memories.c.id).limit(_BATCH)
            ).all()
            if not rows:
                return done
            for row in rows:
                index_memory(conn, row.id, row.title, content.load(conn, row))
            done, after = done + len(rows), rows[-1].id


def _create_index(conn: Connection) -> bool:
    """Create the search index if it is missing; return whether it was created."""
    if _sqlite(conn):
        found = conn.exec_driver_sql(f"SELECT 1 FROM sqlite_master WHERE name = '{TABLE}'").first()
        if found:
            return False
        conn.exec_driver_sql(
            f"CREATE VIRTUAL TABLE {TABLE} USING fts5("
            "title, body, content='', tokenize='unicode61 remove_diacritics 2')"
        )
        return True
    found = conn.exec_driver_sql(f"SELECT to_regclass('{TABLE}')").scalar()
    if found:
        return False
    conn.exec_driver_sql(
        f"CREATE TABLE {TABLE} (memory_id INTEGER PRIMARY KEY REFERENCES memories(id),"
        " document TSVECTOR NOT NULL)"
    )
    conn.exec_driver_sql(f"CREATE INDEX ix_{TABLE}_document ON {TABLE} USING GIN (document)")
    return True


def index_memory(conn: Connection, memory_id: int, title: str, content: str) -> None:
    """Index a memory that is not indexed yet (a new one, or one just unindexed)."""
    if _sqlite(conn):
        driver_execute(conn, _INDEX_SQLITE, (memory_id, title, content))
    else:
        driver_execute(conn, _INDEX_PG, (memory_id, title, content[:PG_INDEXED_CHARS]))


# Straight to the driver (``database.driver_execute``): run on every create.
_INDEX_SQLITE = f"INSERT INTO {TABLE} (rowid, title, body) VALUES (?, ?, ?)"
_INDEX_PG = (
    f"INSERT INTO {TABLE} (memory_id, document) VALUES (?,"
    " setweight(to_tsvector('simple', ?), 'A') || setweight(to_tsvector('simple', ?), 'D'))"
)


def unindex_memory(conn: Connection, memory_id: int, title: str, content: str) -> None:
    """Forget a memory; ``title`` and ``content`` are what it was indexed with."""
    if _sqlite(conn):
        conn.execute(
            text(
                f"INSERT INTO {TABLE} ({TABLE}, rowid, title, body)"
                " VALUES ('delete', :id, :title, :body)"
            ),
            {"id": memory_id, "title": title, "body": content},
        )
        return
    conn.execute(text(f"DELETE FROM {TABLE} WHERE memory_id = :id"), {"id": memory_id})


@dataclass(frozen=True)
class Hit:
    """One search result before its snippet is made."""

    memory_id: int
    score: float


def search(
    conn: Connection, query: str, visible: ColumnElement[bool], limit: int
) -> tuple[list[Hit], int]:
    """Return the best ``limit`` hits for ``query`` among ``visible`` memories, and the
    number of them all."""
    terms = sorted(terms_of(query))
    if not terms:
        return [], 0
    if _sqlite(conn):
        fts = table(TABLE, column("rowid"))
        source = memories.join(fts, fts.c.rowid == memories.c.id)
        condition: Any = text(f"{TABLE} MATCH :query")
        rank: Any = literal_column(f"bm25({TABLE}, {TITLE_WEIGHT}.0, 1.0)")  # lower is better
        score: Any = -rank
        params = {"query": " ".join(f'"{t}"' for t in terms)}
    else:
        fts = table(TABLE, column("memory_id"), column("document"))
        source = memories.join(fts, fts.c.memory_id == memories.c.id)
        wanted = func.to_tsquery("simple", bindparam("query"))
        condition = fts.c.document.op("@@")(wanted)
        score = func.ts_rank(fts.c.document, wanted)
        rank = -score
        params = {"query": " & ".join(terms)}
    matches = select(memories.c.id).select_from(source).where(condition, visible)
    total = int(
        conn.execute(select(func.count()).select_from(matches.subquery()), params).scalar_one()
    )
    if not total:
        return [], 0
    rows = conn.execute(
        select(memories.c.id, score.label("score"))
        .select_from(source)
        .where(condition, visible)
        .order_by(rank, memories.c.id)
        .limit(limit),
        params,
    )
    return [Hit(int(r.id), round(float(r.score), 6)) for r in rows], total


def snippet(content: str, query: str) -> str:
    """Return up to ``SNIPPET_CHARS`` characters of ``content`` around the first query term."""
    terms = sorted(terms_of(query), key=len, reverse=True)
    start = 0
    if terms:
        pattern = re.compile(
            r"(?<![^\W_])(?:" + "|".join(map(re.escape, terms)) + ")", re.IGNORECASE
        )
        found = pattern.search(content)
        if found:
            start = max(0, found.start() - SNIPPET_CHARS // 3)
    window = " ".join(content[start : start + SNIPPET_CHARS].split())
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + SNIPPET_CHARS < len(content) else ""
    return f"{prefix}{window}{suffix}"

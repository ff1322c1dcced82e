"""Keyword search backed by an inverted index (``search_terms``), same on both engines.

Each memory's title and (decompressed) content are split into lower-case word terms;
one row per (term, memory) holds the term's weight (title occurrences count 3 times).
A query matches memories that contain every query term. Scores are a BM25-like sum,
computed in Python from integers the database returns, so both engines and both
databases rank the same data identically; ties go to the older (smaller) id.

A query starts from its rarest term and only looks up the other terms for those
candidates, so its cost follows the number of matches, not the size of the store. For
the same reason the number of indexed memories is a counter kept with each write, and
document frequencies are counted up to ``DF_CAP``: a word found in more memories than
that weighs next to nothing in the score anyway.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, delete, func, insert, select, update

from memshift.store.schema import counters, memories, search_terms

_WORD = re.compile(r"[^\W_]+")
TITLE_WEIGHT = 3
MIN_TERM, MAX_TERM = 2, 64
_K1 = 1.2
_BATCH = 500
DF_CAP = 10_000
DOCUMENTS = "indexed_memories"
SNIPPET_CHARS = 160


def terms_of(text: str) -> Counter[str]:
    """Return the index terms of ``text`` with their counts."""
    return Counter(word[:MAX_TERM] for word in _WORD.findall(text.lower()) if len(word) >= MIN_TERM)


def count_documents(conn: Connection, delta: int) -> None:
    """Add ``delta`` to the number of indexed memories (call on create and delete)."""
    bumped = conn.execute(
        update(counters).where(counters.c.name == DOCUMENTS).values(value=counters.c.value + delta)
    )
    if bumped.rowcount == 0:
        total = conn.execute(select(func.count()).select_from(memories)).scalar_one()
        conn.execute(insert(counters).values(name=DOCUMENTS, value=total))


def _documents(conn: Connection) -> int:
    found = conn.execute(select(counters.c.value).where(counters.c.name == DOCUMENTS)).scalar()
    if found is None:
        return int(conn.execute(select(func.count()).select_from(memories)).scalar_one())
    return int(found)


def index_memory(conn: Connection, memory_id: int, title: str, content: str) -> None:
    """(Re)build the index rows of one memory."""
    unindex_memory(conn, memory_id)
    weights = terms_of(content)
    for term, count in terms_of(title).items():
        weights[term] += TITLE_WEIGHT * count
    if weights:
        conn.execute(
            insert(search_terms),
            [{"term": t, "memory_id": memory_id, "weight": w} for t, w in weights.items()],
        )


def unindex_memory(conn: Connection, memory_id: int) -> None:
    """Remove a memory from the index."""
    conn.execute(delete(search_terms).where(search_terms.c.memory_id == memory_id))


@dataclass(frozen=True)
class Hit:
    """One search result before its snippet is made."""

    memory_id: int
    score: float


def _doc_frequencies(conn: Connection, terms: list[str]) -> dict[str, int]:
    out = {}
    for term in terms:
        capped = (
            select(search_terms.c.memory_id)
            .where(search_terms.c.term == term)
            .limit(DF_CAP)
            .subquery()
        )
        out[term] = int(conn.execute(select(func.count()).select_from(capped)).scalar_one())
    return out


def _weights(
    conn: Connection, term: str, visible: ColumnElement[bool], among: list[int] | None
) -> dict[int, int]:
    query = (
        select(search_terms.c.memory_id, search_terms.c.weight)
        .join(memories, memories.c.id == search_terms.c.memory_id)
        .where(search_terms.c.term == term, visible)
    )
    if among is None:
        return {int(m): int(w) for m, w in conn.execute(query)}
    out: dict[int, int] = {}
    for at in range(0, len(among), _BATCH):
        batch = among[at : at + _BATCH]
        rows = conn.execute(query.where(search_terms.c.memory_id.in_(batch)))
        out.update({int(m): int(w) for m, w in rows})
    return out


def search(
    conn: Connection, query: str, visible: ColumnElement[bool], limit: int
) -> tuple[list[Hit], int]:
    """Return the best ``limit`` hits for ``query`` among ``visible`` memories, and the total."""
    terms = sorted(terms_of(query))
    if not terms:
        return [], 0
    df = _doc_frequencies(conn, terms)
    if min(df.values()) == 0:
        return [], 0
    n_docs = max(_documents(conn), *df.values())
    per_term: dict[str, dict[int, int]] = {}
    candidates: list[int] | None = None
    for term in sorted(terms, key=lambda t: (df[t], t)):
        per_term[term] = _weights(conn, term, visible, candidates)
        candidates = sorted(per_term[term])
        if not candidates:
            return [], 0
    assert candidates is not None
    idf = {t: math.log(1 + (n_docs - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    hits = [
        Hit(m, round(sum(idf[t] * w[m] / (w[m] + _K1) for t, w in per_term.items()), 6))
        for m in candidates
    ]
    hits.sort(key=lambda h: (-h.score, h.memory_id))
    return hits[:limit], len(hits)


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

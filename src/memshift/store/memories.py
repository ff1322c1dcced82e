"""Memories: titled content, optionally in a context, indexed for search.

Reads that list memories select only the metadata columns, never content, so listing
many large memories costs little (the ``new`` engine's rows do not even hold content).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
from sqlalchemy import Connection, delete, or_, select, update

from memshift.database import driver_execute
from memshift.errors import not_found, unprocessable
from memshift.store import search
from memshift.store.access import can_see, require_owner, visible
from memshift.store.call import PROVENANCE, Call, provenance_json
from memshift.store.schema import contexts, memories, relations
from memshift.store.validation import encode_cursor

META_COLUMNS = [c for c in memories.c if c.name != "content"]


def memory_json(row: Any, content: str | None) -> dict[str, Any]:
    """Return the API form of a memory row; ``content=None`` leaves content out (lists)."""
    out: dict[str, Any] = {"id": row.id, "title": row.title}
    if content is not None:
        out["content"] = content
    out |= {
        "context_id": row.context_id,
        "access_level": row.access_level,
        "metadata": orjson.loads(row.meta),
        **provenance_json(row),
    }
    return out


def find_memory(conn: Connection, call: Call, memory_id: int, *, full: bool = False) -> Any:
    """Return the memory row if visible (with the content columns when ``full``); else 404."""
    columns = list(memories.c) if full else META_COLUMNS
    row = conn.execute(
        select(*columns).where(memories.c.id == memory_id, visible(memories, call.who))
    ).first()
    if row is None:
        raise not_found(f"memory {memory_id} not found")
    return row


def check_context(conn: Connection, call: Call, context_id: int | None) -> None:
    """Raise 422 unless ``context_id`` is None or a context the caller may see."""
    if context_id is not None and not can_see(conn, call.who, contexts, context_id):
        raise unprocessable(f"context_id: no context {context_id}", "unknown_context")


def _meta(data: dict[str, Any]) -> str:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


def create_memory(conn: Connection, call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """Create a memory, store its content, index it; return it with content."""
    return memory_json(_insert(conn, call, data), data["content"])


_COLUMNS = (
    "title",
    "context_id",
    "access_level",
    "meta",
    "owner",
    "version",
    "created_at",
    "updated_at",
    "size",
    "content",
    "content_hash",
)
_INSERT = 'INSERT INTO memories ({}) VALUES ({}) RETURNING "id"'.format(
    ", ".join(f'"{name}"' for name in _COLUMNS), ", ".join("?" for _ in _COLUMNS)
)


def insert_memory(conn: Connection, call: Call, data: dict[str, Any]) -> int:
    """Create a memory, store its content, index it; return its id."""
    return int(_insert(conn, call, data).id)


def _insert(conn: Connection, call: Call, data: dict[str, Any]) -> SimpleNamespace:
    """Create a memory, store its content, index it; return its row as stored.

    Straight to the driver: on the path of every create and import, SQLAlchemy's
    statement building cost more than the database's own work. The row is the values
    inserted, not read back: the table has no defaults or triggers of its own."""
    check_context(conn, call, data.get("context_id"))
    stamps = call.stamps(data)
    stored = call.content.put(conn, data["content"])
    params = (
        data["title"],
        data.get("context_id"),
        data.get("access_level", "private"),
        _meta(data.get("metadata", {})),
        stamps["owner"],
        stamps["version"],
        stamps["created_at"],
        stamps["updated_at"],
        stored["size"],
        stored["content"],
        stored["content_hash"],
    )
    new_id = int(driver_execute(conn, _INSERT, params).fetchone()[0])
    search.index_memory(conn, new_id, data["title"], data["content"])
    return SimpleNamespace(id=new_id, **dict(zip(_COLUMNS, params, strict=True)))


def get_memory(conn: Connection, call: Call, memory_id: int) -> dict[str, Any]:
    """Return one visible memory with its content."""
    row = find_memory(conn, call, memory_id, full=True)
    return memory_json(row, call.content.load(conn, row))


def list_memories(
    conn: Connection, call: Call, context_id: int | None, after: int, limit: int
) -> dict[str, Any]:
    """Return one page of visible memories in id order, without content."""
    check_context(conn, call, context_id)
    query = select(*META_COLUMNS).where(memories.c.id > after, visible(memories, call.who))
    if context_id is not None:
        query = query.where(memories.c.context_id == context_id)
    rows = conn.execute(query.order_by(memories.c.id).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [memory_json(r, None) for r in rows],
        "next_cursor": encode_cursor(rows[-1].id) if more else None,
    }


def update_memory(
    conn: Connection, call: Call, memory_id: int, data: dict[str, Any]
) -> dict[str, Any]:
    """Change a memory the caller owns; bump its version; reindex if its text changed."""
    row = find_memory(conn, call, memory_id, full=True)
    require_owner(row, call.who, "memory")
    if "context_id" in data:
        check_context(conn, call, data["context_id"])
    skip = ("metadata", "content", *PROVENANCE)
    values: dict[str, Any] = {k: v for k, v in data.items() if k not in skip}
    if "metadata" in data:
        values["meta"] = _meta(data["metadata"])
    old = call.content.load(conn, row)
    content = data.get("content")
    if content is not None:
        values |= call.content.put(conn, content)
    conn.execute(
        update(memories)
        .where(memories.c.id == memory_id)
        .values(**values, **call.restamps(row, data))
    )
    if content is not None:
        call.content.release(conn, row)  # after the row points at the new content
    else:
        content = old
    title = data.get("title", row.title)
    if (title, content) != (row.title, old):
        search.unindex_memory(conn, memory_id, row.title, old)
        search.index_memory(conn, memory_id, title, content)
    return memory_json(find_memory(conn, call, memory_id), content)


def delete_memory(conn: Connection, call: Call, memory_id: int) -> None:
    """Delete a memory the caller owns, with its relations, index rows and content claim."""
    row = find_memory(conn, call, memory_id, full=True)
    require_owner(row, call.who, "memory")
    conn.execute(
        delete(relations).where(
            or_(relations.c.source_id == memory_id, relations.c.target_id == memory_id)
        )
    )
    search.unindex_memory(conn, memory_id, row.title, call.content.load(conn, row))
    conn.execute(delete(memories).where(memories.c.id == memory_id))
    call.content.release(conn, row)


def search_memories(
    conn: Connection, call: Call, query: str, context_id: int | None, limit: int
) -> dict[str, Any]:
    """Return ranked search results with snippets, and the number of matches."""
    check_context(conn, call, context_id)
    scope = visible(memories, call.who)
    if context_id is not None:
        scope = scope & (memories.c.context_id == context_id)
    hits, total = search.search(conn, query, scope, limit)
    results = []
    for hit in hits:
        row = find_memory(conn, call, hit.memory_id, full=True)
        text = call.content.load(conn, row)
        results.append(
            {
                "id": row.id,
                "title": row.title,
                "snippet": search.snippet(text, query),
                "score": hit.score,
            }
        )
    return {"results": results, "total": total}

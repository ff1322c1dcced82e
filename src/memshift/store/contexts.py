"""Contexts: named groups of memories."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError as SAIntegrityError

from memshift.database import inserted_id
from memshift.errors import ApiError, not_found
from memshift.store.access import require_owner, visible
from memshift.store.call import PROVENANCE, Call, provenance_json
from memshift.store.schema import contexts, memories
from memshift.store.validation import encode_cursor


def context_json(row: Any) -> dict[str, Any]:
    """Return the API form of a context row."""
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "access_level": row.access_level,
        **provenance_json(row),
    }


def _duplicate(name: str) -> ApiError:
    return ApiError(409, "conflict", f"a context named {name!r} already exists for this owner")


def find_context(conn: Connection, call: Call, context_id: int) -> Any:
    """Return the context row if ``call.who`` may see it; raise 404 otherwise."""
    row = conn.execute(
        select(contexts).where(contexts.c.id == context_id, visible(contexts, call.who))
    ).first()
    if row is None:
        raise not_found(f"context {context_id} not found")
    return row


def create_context(conn: Connection, call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """Create a context; raise 409 if its owner already has one of that name."""
    values = {
        "name": data["name"],
        "description": data.get("description", ""),
        "access_level": data.get("access_level", "private"),
        **call.stamps(data),
    }
    try:
        with conn.begin_nested():
            new_id = inserted_id(conn.execute(insert(contexts).values(**values)))
    except SAIntegrityError as exc:
        raise _duplicate(values["name"]) from exc
    return context_json(find_context(conn, call, new_id))


def get_context(conn: Connection, call: Call, context_id: int) -> dict[str, Any]:
    """Return one visible context."""
    return context_json(find_context(conn, call, context_id))


def list_contexts(conn: Connection, call: Call, after: int, limit: int) -> dict[str, Any]:
    """Return one page of visible contexts in id order."""
    rows = conn.execute(
        select(contexts)
        .where(contexts.c.id > after, visible(contexts, call.who))
        .order_by(contexts.c.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "items": [context_json(r) for r in rows],
        "next_cursor": encode_cursor(rows[-1].id) if more else None,
    }


def update_context(
    conn: Connection, call: Call, context_id: int, data: dict[str, Any]
) -> dict[str, Any]:
    """Change a context the caller owns; bump its version."""
    row = find_context(conn, call, context_id)
    require_owner(row, call.who, "context")
    try:
        with conn.begin_nested():
            conn.execute(
                update(contexts)
                .where(contexts.c.id == context_id)
                .values(
                    **{k: v for k, v in data.items() if k not in PROVENANCE},
                    **call.restamps(row, data),
                )
            )
    except SAIntegrityError as exc:
        raise _duplicate(data.get("name", row.name)) from exc
    return context_json(find_context(conn, call, context_id))


def delete_context(conn: Connection, call: Call, context_id: int) -> None:
    """Delete an empty context the caller owns; raise 409 while memories are in it."""
    row = find_context(conn, call, context_id)
    require_owner(row, call.who, "context")
    in_use = conn.execute(select(exists().where(memories.c.context_id == context_id))).scalar()
    if in_use:
        raise ApiError(409, "context_not_empty", f"context {context_id} still holds memories")
    conn.execute(delete(contexts).where(contexts.c.id == context_id))

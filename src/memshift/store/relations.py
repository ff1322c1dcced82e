"""Relations between memories, and the store's statistics.

A relation is visible to whoever may see both of its memories.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, func, or_, select
from sqlalchemy.orm import aliased

from memshift.database import driver_execute
from memshift.errors import not_found, unprocessable
from memshift.store.access import can_see, require_owner, visible
from memshift.store.call import Call, provenance_json
from memshift.store.memories import find_memory
from memshift.store.schema import contexts, memories, relations


def relation_json(row: Any) -> dict[str, Any]:
    """Return the API form of a relation row."""
    return {
        "id": row.id,
        "name": row.name,
        "source_id": row.source_id,
        "target_id": row.target_id,
        "strength": row.strength,
        **provenance_json(row),
    }


def _relation_visible(call: Call) -> ColumnElement[bool]:
    if call.who.admin:
        return relations.c.id.is_not(None)
    # One correlated EXISTS per end: a join inside the subquery would bring its own
    # ``relations`` and tie nothing to the outer row, showing every relation to anyone
    # who may see one.
    ends = []
    for end, column in (
        (aliased(memories), relations.c.source_id),
        (aliased(memories), relations.c.target_id),
    ):
        seen = visible(end, call.who)  # type: ignore[arg-type]
        ends.append(select(end.c.id).where(end.c.id == column, seen).exists())
    return and_(*ends)


def _endpoint(conn: Connection, call: Call, field: str, memory_id: int) -> None:
    if not can_see(conn, call.who, memories, memory_id):
        raise unprocessable(f"{field}: no memory {memory_id}", "unknown_memory")


_INSERT = (
    'INSERT INTO relations ("name", "source_id", "target_id", "strength", "owner", "version",'
    ' "created_at", "updated_at") VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING "id"'
)


def create_relation(conn: Connection, call: Call, data: dict[str, Any]) -> dict[str, Any]:
    """Relate two memories the caller may see."""
    return get_relation(conn, call, insert_relation(conn, call, data))


def insert_relation(conn: Connection, call: Call, data: dict[str, Any]) -> int:
    """Relate two memories the caller may see; return the relation's id (straight to the
    driver, as ``memories.insert_memory``)."""
    _endpoint(conn, call, "source_id", data["source_id"])
    _endpoint(conn, call, "target_id", data["target_id"])
    stamps = call.stamps(data)
    params = (
        data["name"],
        data["source_id"],
        data["target_id"],
        data.get("strength", 1.0),
        stamps["owner"],
        stamps["version"],
        stamps["created_at"],
        stamps["updated_at"],
    )
    return int(driver_execute(conn, _INSERT, params).fetchone()[0])


def find_relation(conn: Connection, call: Call, relation_id: int) -> Any:
    """Return a visible relation row; raise 404 otherwise."""
    row = conn.execute(
        select(relations).where(relations.c.id == relation_id, _relation_visible(call))
    ).first()
    if row is None:
        raise not_found(f"relation {relation_id} not found")
    return row


def get_relation(conn: Connection, call: Call, relation_id: int) -> dict[str, Any]:
    """Return one visible relation."""
    return relation_json(find_relation(conn, call, relation_id))


def delete_relation(conn: Connection, call: Call, relation_id: int) -> None:
    """Delete a relation the caller owns."""
    row = find_relation(conn, call, relation_id)
    require_owner(row, call.who, "relation")
    conn.execute(delete(relations).where(relations.c.id == relation_id))


def memory_relations(conn: Connection, call: Call, memory_id: int) -> dict[str, Any]:
    """Return the visible relations from or to a visible memory, in id order."""
    find_memory(conn, call, memory_id)
    rows = conn.execute(
        select(relations)
        .where(or_(relations.c.source_id == memory_id, relations.c.target_id == memory_id))
        .where(_relation_visible(call))
        .order_by(relations.c.id)
    ).all()
    return {"items": [relation_json(r) for r in rows]}


def stats(conn: Connection, call: Call) -> dict[str, Any]:
    """Return counts and content sizes of what the caller may see."""
    seen = visible(memories, call.who)

    def count(table: Any, where: ColumnElement[bool]) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())

    logical = conn.execute(select(func.coalesce(func.sum(memories.c.size), 0)).where(seen))
    return {
        "memories": count(memories, seen),
        "contexts": count(contexts, visible(contexts, call.who)),
        "relations": count(relations, _relation_visible(call)),
        "logical_bytes": int(logical.scalar_one()),
        "stored_bytes": call.content.stored_bytes(conn, seen),
    }

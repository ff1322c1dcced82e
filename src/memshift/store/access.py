"""Who may see and change what: visibility as SQL conditions, ownership checks.

A user sees their own records and public ones; an admin sees every record. Only the
owner (or an admin) may change a record; a visible record of someone else answers 403.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, or_, true

from memshift.database import driver_execute
from memshift.errors import ApiError
from memshift.store.tokens import Principal


def visible(table: Table, who: Principal) -> ColumnElement[bool]:
    """Return the condition selecting rows of ``table`` that ``who`` may see."""
    if who.admin:
        return true()
    return or_(table.c.owner == who.user, table.c.access_level == "public")


def require_owner(row: Any, who: Principal, what: str) -> None:
    """Raise 403 unless ``who`` owns ``row`` or is an admin."""
    if not who.admin and row.owner != who.user:
        raise ApiError(403, "forbidden", f"this {what} belongs to another user")


def can_see(conn: Connection, who: Principal, table: Table, record_id: int) -> bool:
    """Whether ``who`` may see the record ``record_id`` of ``table``.

    Straight to the driver (``database.driver_execute``): checked on every create of a
    record that refers to another."""
    if who.admin:
        return driver_execute(conn, _ANY[table.name], (record_id,)).fetchone() is not None
    found = driver_execute(conn, _VISIBLE[table.name], (record_id, who.user)).fetchone()
    return found is not None


_ANY = {name: f'SELECT 1 FROM {name} WHERE "id" = ?' for name in ("contexts", "memories")}
_VISIBLE = {
    name: sql + ' AND ("owner" = ? OR "access_level" = \'public\')' for name, sql in _ANY.items()
}

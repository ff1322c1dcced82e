"""Who may see and change what: visibility as SQL conditions, ownership checks.

A user sees their own records and public ones; an admin sees every record. Only the
owner (or an admin) may change a record; a visible record of someone else answers 403.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Table, or_, true

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

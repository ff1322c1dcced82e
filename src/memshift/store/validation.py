"""Validation of what clients send: JSON bodies, path ids, query parameters.

Each failure is an ``ApiError`` whose message names the field, so that a client knows
exactly what to fix; nothing is written when validation fails.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from memshift.errors import ApiError, bad_request, unprocessable
from memshift.timestamps import parse_ts

# The largest id a record can have: the id columns are 32-bit integers on PostgreSQL,
# and both engines on both databases refuse the same ids (400/422, never a 500).
MAX_ID = 2**31 - 1
ACCESS_LEVELS = ("private", "public")


@dataclass(frozen=True)
class Kind:
    """What a field's value must be: its check, and the same said as a JSON schema
    (``openapi.py`` describes the API from it)."""

    check: Callable[[Any], Any]
    schema: Mapping[str, Any]


def _text(min_len: int, max_len: int) -> Kind:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not min_len <= len(value) <= max_len:
            raise ValueError(f"must be {min_len}..{max_len} characters")
        return value

    return Kind(check, {"type": "string", "minLength": min_len, "maxLength": max_len})


def _record_id(value: Any) -> Any:
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ValueError("must be a positive integer id")
    return value


def _fraction(value: Any) -> Any:
    if type(value) not in (int, float) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError("must be a number from 0 to 1")
    return float(value)


def _object(value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _access(value: Any) -> Any:
    if value not in ACCESS_LEVELS:
        raise ValueError("must be 'private' or 'public'")
    return value


def _version(value: Any) -> Any:
    if type(value) is not int or not 1 <= value <= 2**31 - 1:
        raise ValueError("must be a positive integer")
    return value


def _timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time with a zone")
    try:
        return parse_ts(value)
    except ValueError as exc:
        raise ValueError(f"must be an ISO 8601 time with a zone ({exc})") from exc


RECORD_ID = Kind(_record_id, {"type": "integer", "minimum": 1, "maximum": MAX_ID})
FRACTION = Kind(_fraction, {"type": "number", "minimum": 0, "maximum": 1})
OBJECT = Kind(_object, {"type": "object"})
ACCESS = Kind(_access, {"type": "string", "enum": list(ACCESS_LEVELS)})
VERSION = Kind(_version, {"type": "integer", "minimum": 1, "maximum": 2**31 - 1})
TIMESTAMP = Kind(_timestamp, {"type": "string", "format": "date-time"})


@dataclass(frozen=True)
class Field:
    """One accepted body field: what it must be, and whether it is required, nullable,
    admin-only."""

    name: str
    kind: Kind
    required: bool = False
    nullable: bool = False
    admin_only: bool = False

    def check(self, value: Any) -> Any:
        """``value`` checked (and normalized); ``ValueError`` says what is wrong."""
        return self.kind.check(value)


TEXT_TITLE = _text(1, 500)
TEXT_NAME = _text(1, 200)
ADMIN_FIELDS = (
    Field("owner", _text(1, 200), admin_only=True),
    Field("version", VERSION, admin_only=True),
    Field("created_at", TIMESTAMP, admin_only=True),
    Field("updated_at", TIMESTAMP, admin_only=True),
)
MEMORY_CREATE = (
    Field("title", TEXT_TITLE, required=True),
    Field("content", _text(0, 2**31), required=True),
    Field("context_id", RECORD_ID, nullable=True),
    Field("access_level", ACCESS),
    Field("metadata", OBJECT),
    *ADMIN_FIELDS,
)
MEMORY_UPDATE = (
    Field("title", TEXT_TITLE),
    Field("content", _text(0, 2**31)),
    Field("context_id", RECORD_ID, nullable=True),
    Field("access_level", ACCESS),
    Field("metadata", OBJECT),
    *ADMIN_FIELDS,
)
CONTEXT_CREATE = (
    Field("name", TEXT_NAME, required=True),
    Field("description", _text(0, 10_000)),
    Field("access_level", ACCESS),
    *ADMIN_FIELDS,
)
CONTEXT_UPDATE = (
    Field("name", TEXT_NAME),
    Field("description", _text(0, 10_000)),
    Field("access_level", ACCESS),
    *ADMIN_FIELDS,
)
RELATION_CREATE = (
    Field("name", TEXT_NAME, required=True),
    Field("source_id", RECORD_ID, required=True),
    Field("target_id", RECORD_ID, required=True),
    Field("strength", FRACTION),
    *ADMIN_FIELDS,
)


def parse_body(
    body: Any, fields: Sequence[Field], *, admin: bool, update: bool = False
) -> dict[str, Any]:
    """Return the checked fields of ``body``; raise a 422 ``ApiError`` naming the field."""
    if not isinstance(body, dict):
        raise unprocessable("the body must be a JSON object")
    known = {f.name: f for f in fields}
    for name in body:
        if name not in known:
            raise unprocessable(f"{name}: unknown field")
    out: dict[str, Any] = {}
    for field in fields:
        if field.name not in body:
            if field.required:
                raise unprocessable(f"{field.name}: required")
            continue
        value = body[field.name]
        if field.admin_only and not admin:
            raise unprocessable(f"{field.name}: only an admin may set this")
        if value is None and field.nullable:
            out[field.name] = None
            continue
        try:
            out[field.name] = field.check(value)
        except ValueError as exc:
            raise unprocessable(f"{field.name}: {exc}") from exc
    if update and not out:
        raise unprocessable("nothing to change: send at least one field")
    return out


def parse_id(text: str, what: str = "id") -> int:
    """Return a path id as an int; raise a 400 ``ApiError`` if it is not a positive integer."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) < 1:
        raise bad_request(f"{what} must be a positive integer, not {text[:40]!r}", "invalid_id")
    value = int(text)
    if value > MAX_ID:
        raise bad_request(f"{what} is out of range", "invalid_id")
    return value


def query_int(query: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    """Return an integer query parameter within ``low..high`` (``default`` if absent)."""
    found = query_opt_int(query, name, low=low, high=high)
    return default if found is None else found


def query_opt_int(query: Mapping[str, str], name: str, *, low: int, high: int) -> int | None:
    """Return an optional integer query parameter within ``low..high``; raise 400 otherwise."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or not low <= int(raw) <= high:
        raise bad_request(f"{name} must be an integer from {low} to {high}", f"invalid_{name}")
    return int(raw)


def encode_cursor(last_id: int) -> str:
    """Return the opaque cursor that continues after ``last_id``."""
    return base64.urlsafe_b64encode(f"after:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """Return the id a cursor continues after (0 for none); raise 400 for a bad cursor."""
    if not cursor:
        return 0
    error: ApiError = bad_request("cursor is not one this store issued", "invalid_cursor")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise error from exc
    kind, _, value = text.partition(":")
    if kind != "after" or not value.isascii() or not value.isdigit() or len(value) > 19:
        raise error
    return int(value)

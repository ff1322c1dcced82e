"""Timestamps: stored as integer microseconds since the epoch, shown as ISO 8601 UTC.

Integers store exactly the same way on SQLite and PostgreSQL, so both engines and both
databases give byte-identical JSON for the same instant.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def format_ts(us: int) -> str:
    """Return ``us`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(text: str) -> int:
    """Return microseconds for an ISO 8601 time with a zone; raise ``ValueError`` otherwise."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError("a time zone is required")
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds

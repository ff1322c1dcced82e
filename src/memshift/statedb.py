"""Tables of memshift's state database, shared by every proxy instance.

``control`` holds the one control row (primary, percents, write mode, failback latch)
versioned by ``epoch``; ``audit`` records every change of it. ``id_map`` pairs the ids
each store gave one record. ``writes`` is the write-ahead log: every client write
from before it reaches the primary until the secondary has it, and the repair log of
what the secondary has not taken yet. ``copy_plans`` and ``migrate_state`` are backfill's
own log and checkpoints. SQLite by default; PostgreSQL when several instances share it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
)
from sqlalchemy.exc import DBAPIError

from memshift.database import Database
from memshift.timestamps import now_us

metadata = MetaData()

control = Table(
    "control",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("primary_store", String(16), nullable=False),
    Column("read_percent", Integer, nullable=False),
    Column("shadow_read_percent", Integer, nullable=False),
    Column("write_mode", String(16), nullable=False),
    Column("failed_back", Integer, nullable=False),
    Column("reason", Text, nullable=True),
    Column("epoch", BigInteger, nullable=False),
    Column("file_snapshot", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("epoch", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),
    Column("source", String(64), nullable=False),
    Column("change", Text, nullable=False),
    Column("reason", Text, nullable=True),
    sqlite_autoincrement=True,
)

id_map = Table(
    "id_map",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("legacy_id", BigInteger, primary_key=True),
    Column("new_id", BigInteger, nullable=False),
    Index("ux_id_map_new", "kind", "new_id", unique=True),
)

writes = Table(
    "writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("idem_key", String(300), nullable=False),
    Column("user", String(200), nullable=False),
    Column("route", String(200), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("record_key", String(200), nullable=True),
    Column("depends", Text, nullable=False),
    Column("primary_store", String(16), nullable=False),
    Column("primary_status", Integer, nullable=True),
    Column("primary_body", LargeBinary, nullable=True),
    Column("secondary_status", Integer, nullable=True),
    Column("secondary_body", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Index("ix_writes_state", "state", "id"),
    sqlite_autoincrement=True,
)


# A record backfill is copying: planned (with the exact body and key it sends) before
# the create, deleted once the pair is recorded, so a crash in between re-sends the
# same request and the store's idempotency makes it one record.
copy_plans = Table(
    "copy_plans",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("source_id", BigInteger, primary_key=True),
    Column("target", String(16), nullable=False),
    Column("idem_key", String(300), nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("adopted", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

# Checkpoints and reports of migration commands (backfill, verify), one row each.
migrate_state = Table(
    "migrate_state",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)

mcp_sessions = Table(
    "mcp_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("data", Text, nullable=False),
    Column("last_used", BigInteger, nullable=False),
    Index("ix_mcp_sessions_last_used", "last_used"),
)

reports = Table(
    "reports",
    metadata,
    Column("instance", String(200), primary_key=True),
    Column("data", Text, nullable=False),
    Column("at", BigInteger, nullable=False),
)


def save_doc(conn: Connection, name: str, doc: Any) -> None:
    """Store one ``migrate_state`` document (a checkpoint, a report, a counter) as JSON."""
    conn.execute(delete(migrate_state).where(migrate_state.c.name == name))
    conn.execute(
        insert(migrate_state).values(name=name, data=orjson.dumps(doc).decode(), at=now_us())
    )


def load_doc(conn: Connection, name: str) -> Any:
    """Return the ``migrate_state`` document stored under ``name``, or None."""
    data = conn.execute(
        select(migrate_state.c.data).where(migrate_state.c.name == name)
    ).scalar_one_or_none()
    return orjson.loads(data) if data is not None else None


def drop_doc(conn: Connection, name: str) -> None:
    """Remove the ``migrate_state`` document stored under ``name``."""
    conn.execute(delete(migrate_state).where(migrate_state.c.name == name))


def open_state(url: str) -> Database:
    """Open the state database at ``url`` and create its missing tables.

    Several processes may open it at once (``serve --workers``, instances started
    together): tables are created in a write transaction, and a process that lost a
    race to create one finds it there when it tries again.
    """
    db = Database(url, readers=2, key="state.url")
    for attempt in range(5):
        try:
            db.write_sync(lambda conn: metadata.create_all(conn))
            return db
        except DBAPIError:
            if attempt == 4:
                db.close()
                raise
            time.sleep(0.1 * (attempt + 1))
    return db

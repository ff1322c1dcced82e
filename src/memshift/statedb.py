"""Tables of memshift's state database, shared by every proxy instance.

``control`` holds the one control row (primary, percents, write mode, failback latch)
versioned by ``epoch``; ``audit`` records every change of it. ``id_map`` pairs the ids
each store gave one record (as JSON text: ids are opaque, integers or strings).
``writes`` is the write-ahead log: every client write from before it reaches the
primary until the secondary has it, and the repair log of what the secondary has not
taken yet. ``copy_plans`` and ``migrate_state`` are backfill's own log and checkpoints.
``meta`` holds the schema's version. SQLite by default; PostgreSQL when several
instances share it.

The schema has a version (``SCHEMA_VERSION``). ``open_state`` creates a new database
at that version, and moves an older one forward, one step at a time, each step in a
transaction of its own (``MIGRATIONS``).

A state db that cannot be trusted stops the start, before anything is served, with
one line naming what is wrong (``StateDbError``, a ``ConfigError`` of ``state.url``):
a SQLite file that is not a database or fails ``PRAGMA quick_check`` (damaged pages,
a truncated file), a database holding tables named like memshift's that are not, a
schema newer than this memshift, or a table lacking a column it must have (SQLite and
PostgreSQL alike). A proxy that served with a broken write log would take writes it
could never replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
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
    inspect,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from memshift.database import Database
from memshift.errors import ConfigError
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
    Column("legacy_id", Text, primary_key=True),  # the id's JSON text
    Column("new_id", Text, nullable=False),
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
    Column("record_key", Text, nullable=True),  # the first record it changes
    Column("depends", Text, nullable=False),  # JSON: the records it refers to
    Column("touches", Text, nullable=True),  # JSON: every record it changes
    Column("primary_store", String(16), nullable=False),
    Column("primary_status", Integer, nullable=True),
    Column("primary_body", LargeBinary, nullable=True),
    Column("secondary_status", Integer, nullable=True),
    Column("secondary_body", LargeBinary, nullable=True),
    Column("error", Text, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("instance", Text, nullable=True),  # the proxy instance that took it
    Index("ix_writes_state", "state", "id"),
    Index("ix_writes_record", "record_key", "id"),
    sqlite_autoincrement=True,
)


# A record backfill is copying: planned (with the exact body and key it sends) before
# the create, deleted once the pair is recorded, so a crash in between re-sends the
# same request and the store's idempotency makes it one record.
copy_plans = Table(
    "copy_plans",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("source_id", Text, primary_key=True),  # the id's JSON text
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

# Every proxy instance sharing the state db, and when it last said it is alive.
instances = Table(
    "instances",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("beat_at", BigInteger, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
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


SCHEMA_VERSION = 3


def _v2_opaque_ids(conn: Connection) -> None:
    """Ids become opaque (JSON text); writes name every record they change."""
    if conn.dialect.name == "postgresql":
        for statement in (
            "ALTER TABLE id_map ALTER COLUMN legacy_id TYPE TEXT USING legacy_id::text",
            "ALTER TABLE id_map ALTER COLUMN new_id TYPE TEXT USING new_id::text",
            "ALTER TABLE copy_plans ALTER COLUMN source_id TYPE TEXT USING source_id::text",
            "ALTER TABLE writes ALTER COLUMN record_key TYPE TEXT",
            "ALTER TABLE writes ADD COLUMN touches TEXT",
            "CREATE INDEX IF NOT EXISTS ix_writes_record ON writes (record_key, id)",
        ):
            conn.exec_driver_sql(statement)
        return
    # SQLite: a column declared BIGINT turns text that looks like a number back into
    # one, so the two tables are made again at their new shape, their rows cast.
    conn.exec_driver_sql("DROP INDEX IF EXISTS ux_id_map_new")
    for table in (id_map, copy_plans):
        conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME TO {table.name}_v1")
        table.create(conn)
        columns = ", ".join(
            f"CAST({c.name} AS TEXT)" if c.name in ("legacy_id", "new_id", "source_id") else c.name
            for c in table.columns
        )
        conn.exec_driver_sql(f"INSERT INTO {table.name} SELECT {columns} FROM {table.name}_v1")
        conn.exec_driver_sql(f"DROP TABLE {table.name}_v1")
    conn.exec_driver_sql("ALTER TABLE writes ADD COLUMN touches TEXT")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_writes_record ON writes (record_key, id)")


def _v3_instances(conn: Connection) -> None:
    """Writes name the instance that took them (the instances table comes with it)."""
    conn.exec_driver_sql("ALTER TABLE writes ADD COLUMN instance TEXT")


# MIGRATIONS[n] moves a database from version n to n + 1.
MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v2_opaque_ids, 2: _v3_instances}


def schema_version(conn: Connection) -> int | None:
    """The schema version of the database; None when it holds no memshift tables yet."""
    tables = set(inspect(conn).get_table_names())
    if "meta" in tables:
        found = conn.execute(
            select(meta.c.value).where(meta.c.name == "schema_version")
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
    return 1 if "writes" in tables else None  # made before the schema had a version


def _set_version(conn: Connection, version: int) -> None:
    conn.execute(delete(meta).where(meta.c.name == "schema_version"))
    conn.execute(insert(meta).values(name="schema_version", value=str(version)))


def _check_pages(conn: Connection) -> None:
    """SQLite: every page of the file reads back as it should (``quick_check``)."""
    if conn.dialect.name != "sqlite":
        return
    found = [str(row[0]) for row in conn.exec_driver_sql("PRAGMA quick_check(5)")]
    if found != ["ok"]:
        raise StateDbError(f"the state db is damaged ({'; '.join(found)[:300]}){RECOVER}")


def _check_tables(conn: Connection) -> None:
    """Every table of the schema is there with every column it must have."""
    look = inspect(conn)
    present = set(look.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in present:
            raise StateDbError(f"the state db lacks its table {table.name}{RECOVER}")
        columns = {c["name"] for c in look.get_columns(table.name)}
        missing = sorted(c.name for c in table.columns if c.name not in columns)
        if missing:
            raise StateDbError(
                f"the state db's table {table.name} lacks {', '.join(missing)}: it is not "
                f"memshift's, or was changed by hand{RECOVER}"
            )


def _prepare(conn: Connection) -> None:
    """Check the database, then create a new schema or move an older one forward."""
    _check_pages(conn)
    version = schema_version(conn)
    if version is None:
        taken = sorted(set(metadata.tables) & set(inspect(conn).get_table_names()))
        if taken:
            raise StateDbError(
                f"the database holds tables named like memshift's ({', '.join(taken)}) "
                "but no memshift schema: give the state db a database of its own"
            )
        metadata.create_all(conn)
        _set_version(conn, SCHEMA_VERSION)
        return
    if version > SCHEMA_VERSION:
        raise StateDbError(
            f"the state db has schema version {version}; this memshift knows up to "
            f"{SCHEMA_VERSION}: run a newer memshift"
        )
    metadata.tables["meta"].create(conn, checkfirst=True)
    while version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        _set_version(conn, version)
    metadata.create_all(conn)  # tables added since, at their present shape
    _check_tables(conn)


def take_lease(conn: Connection, name: str, holder: str, now: int, ttl_us: int) -> bool:
    """Take (or keep) the lease ``name`` for ``holder``; False while another holds it."""
    found = conn.execute(select(meta.c.value).where(meta.c.name == name)).scalar_one_or_none()
    if found is not None:
        current = orjson.loads(found)
        if current["holder"] != holder and current["until"] > now:
            return False
    value = orjson.dumps({"holder": holder, "until": now + ttl_us}).decode()
    if found is None:
        conn.execute(insert(meta).values(name=name, value=value))
    else:
        conn.execute(update(meta).where(meta.c.name == name).values(value=value))
    return True


RECOVER = (
    ": restore it from a backup, or move it aside to start with an empty one"
    " (its write log, id pairs and control state are then lost)"
)
# What SQLite says of a file that is not a database, or not a whole one.
_DAMAGED = ("not a database", "malformed", "disk image", "database corrupt")


class StateDbError(ConfigError):
    """The state db cannot be used as it is (see the message): a ``state.url`` error."""

    def __init__(self, message: str) -> None:
        super().__init__("state.url", message)


def open_state(url: str) -> Database:
    """Open the state database at ``url``, creating or moving forward its schema.

    Several processes may open it at once (``serve --workers``, instances started
    together): the schema is prepared in a write transaction, and a process that lost a
    race to create a table finds it there when it tries again.
    """
    db = Database(url, readers=2, key="state.url")
    for attempt in range(5):
        try:
            db.write_sync(_prepare)
            return db
        except DBAPIError as exc:
            damage = str(exc.orig).lower()
            if any(sign in damage for sign in _DAMAGED):
                db.close()
                raise StateDbError(f"the state db is damaged ({exc.orig}){RECOVER}") from None
            if attempt == 4:
                db.close()
                raise
            time.sleep(0.1 * (attempt + 1))
        except StateDbError:
            db.close()
            raise
    return db

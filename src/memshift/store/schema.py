"""Tables of the reference store, shared by both engines and both databases.

``memories.content`` is used by the ``legacy`` engine; ``memories.content_hash`` points
into ``blobs`` (and ``blob_chunks``) for the ``new`` engine. ``store_meta`` records which
engine a database belongs to, so that opening it with the other engine is refused.
Ids use AUTOINCREMENT on SQLite (and sequences on PostgreSQL): never reused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
)

from memshift.errors import ConfigError

if TYPE_CHECKING:
    from memshift.database import Database

metadata = MetaData()


def provenance() -> list[Column[object]]:
    """Return fresh owner, version and timestamp columns (times in microseconds)."""
    return [
        Column("owner", String(200), nullable=False),
        Column("version", Integer, nullable=False),
        Column("created_at", BigInteger, nullable=False),
        Column("updated_at", BigInteger, nullable=False),
    ]


store_meta = Table(
    "store_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

contexts = Table(
    "contexts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("access_level", String(16), nullable=False),
    *provenance(),
    UniqueConstraint("owner", "name", name="uq_contexts_owner_name"),
    sqlite_autoincrement=True,
)

blobs = Table(
    "blobs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("stored_size", BigInteger, nullable=False),
    Column("codec", String(8), nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("refcount", Integer, nullable=False),
    Column("data", LargeBinary, nullable=True),
)

blob_chunks = Table(
    "blob_chunks",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

memories = Table(
    "memories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("title", String(500), nullable=False),
    Column("context_id", Integer, ForeignKey("contexts.id"), nullable=True),
    Column("access_level", String(16), nullable=False),
    Column("meta", Text, nullable=False),
    *provenance(),
    Column("size", BigInteger, nullable=False),
    Column("content", Text, nullable=True),
    Column("content_hash", String(64), ForeignKey("blobs.hash"), nullable=True),
    Index("ix_memories_owner", "owner"),
    Index("ix_memories_context", "context_id"),
    Index("ix_memories_public", "access_level"),
    Index("ix_memories_hash", "content_hash"),
    sqlite_autoincrement=True,
)

relations = Table(
    "relations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("source_id", Integer, ForeignKey("memories.id"), nullable=False),
    Column("target_id", Integer, ForeignKey("memories.id"), nullable=False),
    Column("strength", Float, nullable=False),
    *provenance(),
    Index("ix_relations_source", "source_id"),
    Index("ix_relations_target", "target_id"),
    sqlite_autoincrement=True,
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("caller", String(200), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("status", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_idempotency_created", "created_at"),
)


def prepare(db: Database, engine_name: str) -> None:
    """Create missing tables and claim the database for ``engine_name``.

    Raises ``ConfigError`` when the database already belongs to the other engine.
    """
    metadata.create_all(db.engine)
    with db.engine.begin() as conn:
        found = conn.execute(
            select(store_meta.c.value).where(store_meta.c.key == "engine")
        ).scalar()
        if found is None:
            conn.execute(insert(store_meta).values(key="engine", value=engine_name))
        elif found != engine_name:
            raise ConfigError(
                "engine", f"this database holds a {found!r} store, not {engine_name!r}"
            )


def engine_name(db: Database) -> str | None:
    """Return the engine recorded in a store database, or None for an empty database."""
    metadata.create_all(db.engine, tables=[store_meta])
    with db.engine.connect() as conn:
        return conn.execute(select(store_meta.c.value).where(store_meta.c.key == "engine")).scalar()

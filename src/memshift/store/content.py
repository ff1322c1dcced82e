"""How each engine keeps memory content.

``PlainContent`` (legacy) keeps the text in ``memories.content``. ``BlobContent`` (new)
keeps it once per distinct SHA-256 in ``blobs``, reference-counted: content of
``compress_min_bytes`` or more is zstandard-compressed, content over ``chunk_bytes`` is
split into ordered, separately compressed ``blob_chunks``. Memory rows then hold only
the hash, so listing memories never touches content.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import zstandard
from sqlalchemy import ColumnElement, Connection, delete, func, select, update

from memshift.database import driver_execute, driver_executemany
from memshift.store.schema import blob_chunks, blobs, memories


class ContentStore(Protocol):
    """Where a memory's content lives; every method runs inside the caller's transaction."""

    def put(self, conn: Connection, text: str) -> dict[str, Any]:
        """Store ``text``; return the memory columns that refer to it."""

    def load(self, conn: Connection, row: Any) -> str:
        """Return the content a memory row refers to."""

    def release(self, conn: Connection, row: Any) -> None:
        """Drop the memory row's claim on its content."""

    def digest(self, row: Any) -> str:
        """Return the SHA-256 (hex) of the content a memory row refers to."""

    def stored_bytes(self, conn: Connection, where: ColumnElement[bool]) -> int:
        """Return the bytes kept for the content of the memories matching ``where``."""


class PlainContent:
    """Legacy engine: the text itself, in the memory row."""

    def put(self, conn: Connection, text: str) -> dict[str, Any]:
        return {"content": text, "content_hash": None, "size": len(text.encode())}

    def load(self, conn: Connection, row: Any) -> str:
        return str(row.content)

    def release(self, conn: Connection, row: Any) -> None:
        return None

    def digest(self, row: Any) -> str:
        return hashlib.sha256(str(row.content).encode()).hexdigest()

    def stored_bytes(self, conn: Connection, where: ColumnElement[bool]) -> int:
        return int(
            conn.execute(
                select(func.coalesce(func.sum(memories.c.size), 0)).where(where)
            ).scalar_one()
        )


class BlobContent:
    """New engine: deduplicated, compressed, chunked blobs addressed by SHA-256."""

    def __init__(self, *, level: int, compress_min_bytes: int, chunk_bytes: int) -> None:
        self.level = level
        self.compress_min_bytes = compress_min_bytes
        self.chunk_bytes = chunk_bytes
        self._local = threading.local()

    def _compressor(self) -> Any:
        comp = getattr(self._local, "compressor", None)
        if comp is None:
            comp = self._local.compressor = zstandard.ZstdCompressor(level=self.level)
        return comp

    def put(self, conn: Connection, text: str) -> dict[str, Any]:
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if not self._add_ref(conn, digest) and not self._insert_blob(conn, digest, data):
            self._add_ref(conn, digest)  # another writer stored the same content first
        return {"content": None, "content_hash": digest, "size": len(data)}

    # Straight to the driver (``database.driver_execute``): these run on every create.
    def _add_ref(self, conn: Connection, digest: str) -> bool:
        bumped = driver_execute(conn, _ADD_REF, (digest,))
        return int(bumped.rowcount) > 0

    def _insert_blob(self, conn: Connection, digest: str, data: bytes) -> bool:
        """Store ``data`` as a new blob; False if a blob of that hash is there already."""
        row: tuple[object, ...]
        pieces: list[bytes] = []
        if len(data) > self.chunk_bytes:
            pieces = [
                self._compressor().compress(data[at : at + self.chunk_bytes])
                for at in range(0, len(data), self.chunk_bytes)
            ]
            row = (digest, len(data), sum(len(p) for p in pieces), "zstd", len(pieces), None)
        else:
            codec, stored = self._encode(data)
            row = (digest, len(data), len(stored), codec, 0, stored)
        if int(driver_execute(conn, _BLOB, row).rowcount) == 0:
            return False
        if pieces:
            driver_executemany(conn, _CHUNK, [(digest, i, p) for i, p in enumerate(pieces)])
        return True

    def _encode(self, data: bytes) -> tuple[str, bytes]:
        if len(data) >= self.compress_min_bytes:
            packed = self._compressor().compress(data)
            if len(packed) < len(data):
                return "zstd", packed
        return "raw", data

    def load(self, conn: Connection, row: Any) -> str:
        return read_blob(conn, str(row.content_hash)).decode()

    def digest(self, row: Any) -> str:
        return str(row.content_hash)  # its address is its SHA-256

    def release(self, conn: Connection, row: Any) -> None:
        digest = row.content_hash
        conn.execute(
            update(blobs).where(blobs.c.hash == digest).values(refcount=blobs.c.refcount - 1)
        )
        left = conn.execute(select(blobs.c.refcount).where(blobs.c.hash == digest)).scalar()
        if left is not None and left <= 0:
            conn.execute(delete(blob_chunks).where(blob_chunks.c.hash == digest))
            conn.execute(delete(blobs).where(blobs.c.hash == digest))

    def stored_bytes(self, conn: Connection, where: ColumnElement[bool]) -> int:
        used = select(memories.c.content_hash).where(where).distinct().scalar_subquery()
        query = select(func.coalesce(func.sum(blobs.c.stored_size), 0)).where(
            blobs.c.hash.in_(used)
        )
        return int(conn.execute(query).scalar_one())


_ADD_REF = 'UPDATE blobs SET "refcount" = "refcount" + 1 WHERE "hash" = ?'
_CHUNK = 'INSERT INTO blob_chunks ("hash", "seq", "data") VALUES (?, ?, ?)'
_BLOB = (
    'INSERT INTO blobs ("hash", "size", "stored_size", "codec", "chunks", "data", "refcount")'
    ' VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT ("hash") DO NOTHING'
)


def _decode(codec: str, data: bytes) -> bytes:
    if codec == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompress(data))
    if codec == "raw":
        return bytes(data)
    raise ValueError(f"unknown codec {codec!r}")


def blob_pieces(conn: Connection, digest: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(seq, stored bytes)`` of a chunked blob in order, one chunk in memory at a time."""
    seqs = (
        conn.execute(
            select(blob_chunks.c.seq)
            .where(blob_chunks.c.hash == digest)
            .order_by(blob_chunks.c.seq)
        )
        .scalars()
        .all()
    )
    for seq in seqs:
        data = conn.execute(
            select(blob_chunks.c.data).where(blob_chunks.c.hash == digest, blob_chunks.c.seq == seq)
        ).scalar_one()
        yield seq, bytes(data)


def read_blob(conn: Connection, digest: str) -> bytes:
    """Return the original bytes of blob ``digest``.

    Raises ``LookupError`` if the blob or one of its chunks is missing, ``ValueError``
    (or a zstandard error) if stored bytes do not decode.
    """
    row = conn.execute(select(blobs).where(blobs.c.hash == digest)).first()
    if row is None:
        raise LookupError(f"blob {digest} is missing")
    if row.chunks == 0:
        return _decode(row.codec, bytes(row.data))
    parts = []
    for expected, (seq, piece) in enumerate(blob_pieces(conn, digest)):
        if seq != expected:
            raise LookupError(f"blob {digest} lacks chunk {expected}")
        parts.append(_decode(row.codec, piece))
    if len(parts) != row.chunks:
        raise LookupError(f"blob {digest} has {len(parts)} of {row.chunks} chunks")
    return b"".join(parts)

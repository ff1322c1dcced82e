"""``Idempotency-Key``: a repeated write returns the first answer and applies nothing again.

Keys are scoped to the caller (the token's user) and kept ``idempotency_ttl_s`` (24 h by
default). The first answer is stored in the same transaction as the write itself, so a
write and its key are committed together or not at all. Only successful answers are
kept: a refused write changed nothing, so repeating it is harmless. Reusing a key for a
different request is refused with 422.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import Connection, delete

from memshift.database import driver_execute
from memshift.errors import bad_request, unprocessable
from memshift.store.schema import idempotency_keys

MAX_KEY = 255


@dataclass(frozen=True)
class Answer:
    """A stored answer: status and JSON body bytes (empty for 204)."""

    status: int
    body: bytes


def check_key(key: str) -> str:
    """Return ``key`` if usable; raise 400 otherwise."""
    if not 1 <= len(key) <= MAX_KEY or not key.isascii() or not key.isprintable():
        raise bad_request(
            f"Idempotency-Key must be 1..{MAX_KEY} printable ASCII characters",
            "invalid_idempotency_key",
        )
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Return a digest identifying the request a key was first used for."""
    digest = hashlib.sha256(f"{method} {path}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def recall(conn: Connection, caller: str, key: str, fp: str) -> Answer | None:
    """Return the first answer under ``key`` or None; 422 if the key served another request."""
    row = driver_execute(conn, _RECALL, (caller, key)).fetchone()
    if row is None:
        return None
    found_fp, status, body = row
    if found_fp != fp:
        raise unprocessable(
            "Idempotency-Key was already used for a different request", "idempotency_key_reused"
        )
    return Answer(int(status), bytes(body))


_RECALL = (
    'SELECT "fingerprint", "status", "body" FROM idempotency_keys WHERE "caller" = ? AND "key" = ?'
)


def remember(conn: Connection, caller: str, key: str, fp: str, answer: Answer, now: int) -> None:
    """Store the answer given under ``key`` (straight to the driver: on every keyed write)."""
    params = (caller, key, fp, answer.status, answer.body, now)
    driver_execute(conn, _REMEMBER, params)


_REMEMBER = (
    'INSERT INTO idempotency_keys ("caller", "key", "fingerprint", "status", "body",'
    ' "created_at") VALUES (?, ?, ?, ?, ?, ?)'
)


def purge(conn: Connection, older_than: int) -> int:
    """Forget keys first used before ``older_than``; return how many."""
    gone = conn.execute(delete(idempotency_keys).where(idempotency_keys.c.created_at < older_than))
    return gone.rowcount

"""Who a request came from, as the rollback rules count callers.

A caller is a client's credentials (its ``Authorization`` value, hashed in memory and
never shown) or, without any, its address. The proxy's handler sets ``CALLER`` for the
life of a request; the tasks a request starts (its mirror, its shadow read) inherit
it, so every exchange with a store is counted for the caller that caused it. Work of
memshift's own (replay, migration) has no caller: ``""``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar

CALLER: ContextVar[str] = ContextVar("memshift_caller", default="")


def caller_of(headers: Mapping[str, str], remote: str | None) -> str:
    """The caller of a request with ``headers`` from ``remote``."""
    credentials = headers.get("Authorization")
    if credentials:
        return format(hash(credentials) & 0xFFFF_FFFF_FFFF, "x")
    return remote or "?"


@contextlib.contextmanager
def calling(caller: str) -> Iterator[None]:
    """Count what happens inside the block for ``caller``."""
    token = CALLER.set(caller)
    try:
        yield
    finally:
        CALLER.reset(token)

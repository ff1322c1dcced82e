"""Header hygiene between clients and stores.

Hop-by-hop headers (and any the ``Connection`` header names) never cross the proxy;
``Host`` and ``Content-Length`` are set anew for each store; ``X-Forwarded-For`` gains
the client's address; every request carries an ``X-Request-Id`` to both stores.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterable, Mapping

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# The body is forwarded as read: decoded, so its Content-Encoding stays behind.
_NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "content-length",
    "content-encoding",
    "expect",
    "x-request-id",
}
# A client's X-Forwarded-For is not passed as it came: ``outbound`` extends it.
_NOT_FORWARDED_AS_IS = _NOT_FORWARDED | {"x-forwarded-for"}
_NOT_ANSWERED = HOP_BY_HOP | {"content-length", "content-encoding", "date", "server"}
SERVED_BY = "X-Memshift-Served-By"


class _FreshIds:
    """Unique ids, cheaply: a random prefix per process and a counter.

    128 random bits per request (``uuid4``) cost a system call each; a 64-bit random
    prefix drawn once per process (again in a forked child) and a counter are as
    unique and cost nothing.
    """

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


fresh_id = _FreshIds()


def request_id(headers: Mapping[str, str]) -> str:
    """Return the client's ``X-Request-Id`` when it is sane, else a new one."""
    given = headers.get("X-Request-Id", "")
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return fresh_id()


def _named_by_connection(headers: Mapping[str, str]) -> set[str]:
    return {t.strip().lower() for t in headers.get("Connection", "").split(",") if t.strip()}


def outbound(
    headers: Mapping[str, str],
    items: Iterable[tuple[str, str]],
    *,
    remote: str | None,
    scheme: str,
    rid: str,
) -> list[tuple[str, str]]:
    """Return the headers to send a store for a client request (``items`` in order)."""
    dropped = _NOT_FORWARDED_AS_IS
    if "Connection" in headers:  # the headers it names are hop-by-hop too
        dropped = dropped | _named_by_connection(headers)
    out = [(k, v) for k, v in items if k.lower() not in dropped]
    chain = headers.get("X-Forwarded-For")
    if remote:
        chain = f"{chain}, {remote}" if chain else remote
    if chain:
        out.append(("X-Forwarded-For", chain))
    out += [("X-Forwarded-Proto", scheme), ("X-Request-Id", rid)]
    return out


def with_header(items: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    """Return ``items`` with every ``name`` header replaced by one with ``value``."""
    lowered = name.lower()
    return [(k, v) for k, v in items if k.lower() != lowered] + [(name, value)]


def inbound(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return a store's answer headers that may go back to the client."""
    return [(k, v) for k, v in items if k.lower() not in _NOT_ANSWERED]

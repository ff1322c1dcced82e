"""Settings of one reference store process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from memshift.limits import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_JSON_DEPTH

Engine = Literal["legacy", "new"]
ENGINES: tuple[Engine, ...] = ("legacy", "new")

KIB = 1024
MIB = 1024 * KIB
# What a write acted for a user (X-Act-As, as memshift mirrors) may carry over the body
# limit: the provenance fields and translated ids memshift adds to what a client sent.
ACTING_HEADROOM = 64 * KIB


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What a store needs to know to serve; defaults are the documented ones."""

    engine: Engine
    db_url: str
    max_body_bytes: int = 16 * MIB

    def body_limit(self, acting: bool) -> int:
        """The largest body taken from a client, or, ``acting``, from an admin acting
        for one (see ``ACTING_HEADROOM``)."""
        return self.max_body_bytes + (ACTING_HEADROOM if acting else 0)

    max_json_depth: int = MAX_JSON_DEPTH
    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S
    zstd_level: int = 3
    compress_min_bytes: int = 1 * KIB
    chunk_bytes: int = 1 * MIB
    idempotency_ttl_s: int = 24 * 3600
    readers: int = 4
    # Host header values the MCP endpoint accepts (DNS-rebinding protection).
    mcp_hosts: tuple[str, ...] = ("127.0.0.1:*", "localhost:*", "[::1]:*")
    # An MCP session with no request for this long is ended (the client gets 404).
    mcp_session_idle_s: float = 30 * 60

"""Settings of one reference store process."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Engine = Literal["legacy", "new"]
ENGINES: tuple[Engine, ...] = ("legacy", "new")

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What a store needs to know to serve; defaults are the documented ones."""

    engine: Engine
    db_url: str
    max_body_bytes: int = 16 * MIB
    zstd_level: int = 3
    compress_min_bytes: int = 1 * KIB
    chunk_bytes: int = 1 * MIB
    idempotency_ttl_s: int = 24 * 3600
    readers: int = 4
    # Host header values the MCP endpoint accepts (DNS-rebinding protection).
    mcp_hosts: tuple[str, ...] = ("127.0.0.1:*", "localhost:*", "[::1]:*")
    # An MCP session with no request for this long is ended (the client gets 404).
    mcp_session_idle_s: float = 30 * 60

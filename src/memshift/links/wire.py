"""What travels to a store and back: a request by path, a whole or a streamed answer.

These, like the other records made for every request (a reply, a write, its outcome),
are slotted dataclasses that nothing changes once made, rather than frozen ones: a
frozen dataclass costs three times as much to make, and a write makes a dozen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(slots=True)
class OutboundRequest:
    """What is sent to a store: never an absolute URL, only a path under its base URL.

    A request whose method is ``protocol.TOOL`` is a tool call (``/mcp/tools/NAME``,
    the arguments as the body), sent on memshift's own MCP session with the store.
    """

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    idle_s: float | None = None  # the longest silence of a streamed body (None: read_timeout_s)


@dataclass(slots=True)
class UpstreamResponse:
    """A store's whole answer, and how long it took."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    elapsed_s: float


@dataclass(frozen=True)
class StreamedResponse:
    """A store's answer whose body is read as it arrives (an SSE stream, say)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: AsyncIterator[bytes]
    elapsed_s: float


def header(headers: tuple[tuple[str, str], ...] | list[tuple[str, str]], name: str) -> str | None:
    """Return the first ``name`` header's value."""
    lowered = name.lower()
    return next((v for k, v in headers if k.lower() == lowered), None)

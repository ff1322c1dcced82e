"""MCP Streamable HTTP as memshift reads it: JSON-RPC messages, SSE events, tool results.

A tool call's outcome is seen the way a REST answer is: a status and a JSON document.
The document is the result's ``structuredContent`` (or the JSON its first text block
carries); the status is 200 for a result, the ``status`` an error document names for
an ``isError`` result (422 when it names none), and 4xx/5xx for a JSON-RPC error. That
is what the write log keeps, what mirroring and replay check, and what compare diffs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

TOOL = "TOOL"  # the method of a tool call in the write log and on the mirror path
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"
NAME_HEADER = "Mcp-Name"
ACCEPT = "application/json, text/event-stream"
HANDSHAKE_VERSION = LATEST_HANDSHAKE_VERSION

# JSON-RPC error codes and the HTTP status they stand for on memshift's side.
_RPC_STATUS = {-32700: 400, -32600: 400, -32601: 404, -32602: 422, -32603: 502}


def is_modern(version: str | None) -> bool:
    """Whether a request's protocol version is of the sessionless (2026-07-28+) era."""
    return version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS


def loads(body: bytes) -> Any:
    """Return the JSON in ``body``, or None when it is not JSON."""
    try:
        return orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        return None


def is_request(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" in msg


def is_notification(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" in msg and "id" not in msg


def is_response(msg: Any) -> bool:
    return isinstance(msg, dict) and "method" not in msg and ("result" in msg or "error" in msg)


def tool_call(msg: Any) -> tuple[str, dict[str, Any]] | None:
    """Return the tool name and arguments of a ``tools/call`` request."""
    if not is_request(msg) or msg.get("method") != "tools/call":
        return None
    params = msg.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("name"), str):
        return None
    args = params.get("arguments")
    return params["name"], args if isinstance(args, dict) else {}


def _text_json(result: dict[str, Any]) -> Any:
    for block in result.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text":
            return loads(str(block.get("text", "")).encode())
    return None


def tool_outcome(msg: Any) -> tuple[int, Any]:
    """Return the status and document of a tool call's JSON-RPC response."""
    if not isinstance(msg, dict):
        return 502, {"error": {"code": "no_response", "message": "no JSON-RPC response"}}
    error = msg.get("error")
    if isinstance(error, dict):
        code = error.get("code")
        status = _RPC_STATUS.get(code, 400) if isinstance(code, int) else 400
        return status, {"error": {"code": code, "message": error.get("message")}}
    result = msg.get("result")
    if not isinstance(result, dict):
        return 502, {"error": {"code": "no_result", "message": "the response has no result"}}
    doc = result.get("structuredContent")
    if doc is None:
        doc = _text_json(result)
    if result.get("isError"):
        named = doc.get("error", {}).get("status") if isinstance(doc, dict) else None
        return (named if isinstance(named, int) and 400 <= named < 600 else 422), doc
    return 200, doc


def replace_result(msg: dict[str, Any], doc: Any) -> None:
    """Put ``doc`` back into a tool result: structured content and its JSON text copy."""
    result = msg.get("result")
    if not isinstance(result, dict):
        return
    if "structuredContent" in result:
        result["structuredContent"] = doc
    for block in result.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text":
            if loads(str(block.get("text", "")).encode()) is not None:
                block["text"] = orjson.dumps(doc).decode()
            break


@dataclass(frozen=True)
class Event:
    """One SSE event as it came: its raw bytes, and the JSON-RPC message it carries."""

    raw: bytes
    message: Any


class SseReader:
    """Splits an SSE byte stream into events as the bytes arrive."""

    def __init__(self, limit: int = 64 * 1024 * 1024) -> None:
        self._buffer = b""
        self._limit = limit

    def feed(self, chunk: bytes) -> Iterator[Event]:
        """Return the events ``chunk`` completes; raise ValueError past the size limit."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                if len(self._buffer) > self._limit:
                    raise ValueError("an SSE event is larger than the limit")
                return
            raw, self._buffer = self._buffer[: end + 2], self._buffer[end + 2 :]
            yield Event(raw, _event_message(raw))

    def rest(self) -> bytes:
        """Return what is left after the last complete event."""
        return self._buffer


def _event_message(raw: bytes) -> Any:
    data = [line[5:].removeprefix(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
    return loads(b"\n".join(data)) if data else None


def with_message(event: Event, msg: Any) -> bytes:
    """Return ``event`` with its data replaced by ``msg`` (other fields kept)."""
    lines = [ln for ln in event.raw.rstrip(b"\n").split(b"\n") if not ln.startswith(b"data:")]
    return b"\n".join([*lines, b"data: " + orjson.dumps(msg)]) + b"\n\n"


def is_sse(headers: Any) -> bool:
    """Whether the answer headers announce an event stream."""
    for name, value in headers:
        if name.lower() == "content-type":
            return bool(value.lower().startswith("text/event-stream"))
    return False


def messages(body: bytes, sse: bool) -> list[Any]:
    """Return the JSON-RPC messages of a whole answer (JSON or SSE)."""
    if not sse:
        doc = loads(body)
        return doc if isinstance(doc, list) else [doc] if doc is not None else []
    reader = SseReader()
    return [e.message for e in reader.feed(body + b"\n\n") if e.message is not None]


def response_to(body: bytes, sse: bool, request_id: Any) -> dict[str, Any] | None:
    """Return the response to ``request_id`` in a whole answer, if there is one."""
    for msg in messages(body, sse):
        if is_response(msg) and msg.get("id") == request_id:
            return dict(msg)
    return None


def initialize_request(request_id: str, version: str = HANDSHAKE_VERSION) -> dict[str, Any]:
    """Return the ``initialize`` memshift sends for its own session with a store."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "memshift", "version": "1"},
        },
    }


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def bogus_reply(body: bytes) -> bool:
    """Whether a store answered a notification with an error for an unknown id.

    Notifications get no answer; a store that sends an error with id ``"unknown"``
    or null breaks the protocol, and that answer is dropped.
    """
    for msg in messages(body, body.lstrip().startswith((b"event:", b"data:", b"id:"))):
        if isinstance(msg, dict) and "error" in msg and msg.get("id") in ("unknown", None):
            return True
    return False

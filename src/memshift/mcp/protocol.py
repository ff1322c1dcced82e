"""MCP Streamable HTTP as memshift reads it: JSON-RPC messages, SSE events, tool results.

A tool call's outcome is seen the way a REST answer is: a status and a JSON document.
The document is the result's ``structuredContent`` (or the JSON its first text block
carries); the status is 200 for a result, the ``status`` an error document names for
an ``isError`` result (422 when it names none), and 4xx/5xx for a JSON-RPC error. That
is what the write log keeps, what mirroring and replay check, and what compare diffs.
"""

from __future__ import annotations

from typing import Any

import orjson

from memshift.mcp.sse import events as sse_events

TOOL = "TOOL"  # the method of a tool call: its name in the path, its arguments the body

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
METHOD_HEADER = "Mcp-Method"
NAME_HEADER = "Mcp-Name"
ACCEPT = "application/json, text/event-stream"
# The protocol versions memshift speaks, as the mcp library it is tested with names
# them (a test holds them equal). Not imported from it: importing the library builds
# every MCP type, a fifth of a second for each command that never speaks MCP.
HANDSHAKE_VERSION = "2025-11-25"
HANDSHAKE_VERSIONS = frozenset(("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"))

# JSON-RPC error codes and the HTTP status they stand for on memshift's side.
_RPC_STATUS = {-32700: 400, -32600: 400, -32601: 404, -32602: 422, -32603: 502}


# The methods a route label may name (``mcp:METHOD``); any other is ``mcp:other``.
KNOWN_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "server/discover",
        "tasks/get",
        "tasks/list",
        "tasks/result",
        "tasks/cancel",
        "HTTP GET",
        "HTTP DELETE",
    }
)


def method_label(method: Any) -> str:
    """A JSON-RPC method (or ``HTTP VERB``) as a route label: from a closed set."""
    return f"mcp:{method}" if method in KNOWN_METHODS else "mcp:other"


def is_modern(version: str | None) -> bool:
    """Whether a request's protocol version is of the sessionless (2026-07-28+) era."""
    return version is not None and version not in HANDSHAKE_VERSIONS


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


def _text_document(result: dict[str, Any]) -> Any:
    """The document a result without structured content carries in its first text
    block: the JSON in it, or else the text itself (``"Entity not found"``), so that
    what a store said is kept and compared, never lost as null."""
    for block in result.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "text":
            text = str(block.get("text", ""))
            found = loads(text.encode())
            return text if found is None and text else found
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
        doc = _text_document(result)
    if result.get("isError"):
        if not isinstance(doc, dict):  # a message in words: kept as an error document
            doc = {"error": {"code": "tool_error", "message": doc}}
        named = doc.get("error", {}).get("status") if isinstance(doc.get("error"), dict) else None
        return (named if isinstance(named, int) and 400 <= named < 600 else 422), doc
    return 200, doc


def with_result(result: Any, doc: Any) -> Any:
    """Return a tool result with ``doc`` in it: structured content and its JSON text copy."""
    if not isinstance(result, dict):
        return result
    out = dict(result)
    if "structuredContent" in out:
        out["structuredContent"] = doc
    content = out.get("content")
    if isinstance(content, list):
        blocks = list(content)
        for i, block in enumerate(blocks):
            if isinstance(block, dict) and block.get("type") == "text":
                if loads(str(block.get("text", "")).encode()) is not None:
                    blocks[i] = {**block, "text": orjson.dumps(doc).decode()}
                break
        out["content"] = blocks
    return out


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
    return [e.message for e in sse_events(body) if e.message is not None]


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

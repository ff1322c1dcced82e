"""The MCP endpoint through the proxy: each JSON-RPC message to where it belongs.

A ``tools/call`` of a configured write tool goes to the write path, of a read tool to
the read path (``calls.py`` is their codec); of any other tool, to the primary only,
counted as unclassified. ``initialize``, notifications and ``DELETE`` are the
session's (``lifecycle.py``). Every other method (``tools/list``, ``ping``, ...) and
every GET stream goes to the primary, its answer relayed as it comes.

2025-era clients have a session minted here; 2026-07-28 clients have none: their
requests pass with their ``_meta`` and routing headers as they are. JSON-RPC batches
are refused (-32600): no protocol era of MCP still sends them.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from memshift.errors import UpstreamError
from memshift.logs import bound
from memshift.mcp import protocol
from memshift.proxy.call import upstream_failure
from memshift.proxy.mcp import lifecycle, relay
from memshift.proxy.mcp.calls import ToolCall
from memshift.proxy.mcp.exchange import McpParts, McpRequest, rpc_error
from memshift.proxy.reads import ReadPath
from memshift.proxy.writes import WritePath

log = structlog.get_logger("memshift.proxy")


async def _passthrough(mcp: McpRequest, route: str) -> web.StreamResponse:
    """Send the request to the primary; the client gets its answer, streamed.

    A GET is the client's standalone stream: it may stay quiet for long (``[mcp]
    stream_idle_s``, not the store's ``read_timeout_s``), and carries a keep-alive
    comment every ``keepalive_s`` while it is.
    """
    primary = mcp.parts.plane.state.primary
    settings = mcp.parts.settings().mcp
    standalone = mcp.request.method == "GET"
    idle_s = settings.stream_idle_s if standalone else None
    async with mcp.open(primary, mcp.wire_body(), "mcp", route, idle_s=idle_s) as upstream:
        keepalive = settings.keepalive_s if standalone else None
        response, _final = await relay.stream(mcp, primary, upstream, keepalive)
        return response


async def _dispatch(mcp: McpRequest, reads: ReadPath, writes: WritePath) -> web.StreamResponse:
    msg = mcp.msg
    if protocol.is_notification(msg):
        return await lifecycle.notify(mcp)
    call = protocol.tool_call(msg)
    if call is None:
        return await _passthrough(mcp, protocol.method_label(msg.get("method")))
    name, args = call
    settings = mcp.parts.settings()
    spec = settings.tool(name)
    with bound(tool=name[:128]):
        if spec is not None and name in settings.mcp.write_tools:
            return await writes.write(ToolCall(mcp, spec, args))
        if spec is not None and name in settings.mcp.read_tools:
            return await reads.read(ToolCall(mcp, spec, args))
        mcp.parts.metrics.mcp_unclassified.inc()
        log.warning("mcp_unclassified_tool", tool=name[:128])
        return await _passthrough(mcp, "mcp:tools/call (unclassified)")


async def handle_mcp(
    parts: McpParts,
    reads: ReadPath,
    writes: WritePath,
    request: web.Request,
    body: bytes,
    headers: list[tuple[str, str]],
    rid: str,
) -> web.StreamResponse:
    """Serve one request to the MCP endpoint."""
    msg: Any = protocol.loads(body) if request.method == "POST" else None
    mcp = McpRequest(parts, request, body, msg, headers, rid)
    if isinstance(msg, list):
        return rpc_error(None, 400, -32600, "JSON-RPC batches are not accepted through memshift")
    modern = protocol.is_modern(request.headers.get(protocol.VERSION_HEADER))
    sid = request.headers.get(protocol.SESSION_HEADER)
    if sid and not modern:
        mcp.session = await parts.sessions.get(sid)
        if mcp.session is None:
            return rpc_error(mcp.msg_id, 404, -32001, "Session not found")
    try:
        if request.method == "DELETE" and mcp.session is not None:
            return await lifecycle.end(mcp)
        if request.method != "POST":
            return await _passthrough(mcp, protocol.method_label(f"HTTP {request.method}"))
        if not isinstance(msg, dict):
            return await _passthrough(mcp, "mcp:other")
        if msg.get("method") == "initialize" and mcp.session is None and not modern:
            return await lifecycle.initialize(mcp)
        return await _dispatch(mcp, reads, writes)
    except UpstreamError as exc:
        status, _code, message = upstream_failure(exc)
        return rpc_error(mcp.msg_id, status, -32603, message, exc.store)

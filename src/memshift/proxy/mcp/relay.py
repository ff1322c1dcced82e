"""A store's MCP answer on its way to the client: its form kept, its response rewritten.

An answer keeps the form the store chose, JSON or SSE. The one message that changes
is the response to the client's request: it gets the client's own JSON-RPC id back
(stores see memshift's), and, where a ``Rewrite`` is given, a new body (a tool result
with its ids in legacy's terms). Everything else passes as it came, byte for byte.

``stream`` relays an SSE answer event by event as it arrives, so progress
notifications reach the client before the result; it is for answers that need no
decision on their content. ``whole`` builds the client's answer from an answer
already read, when its response must be looked at before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from memshift.config.settings import StoreName
from memshift.errors import UpstreamError
from memshift.links.wire import StreamedResponse, UpstreamResponse, header
from memshift.mcp import protocol
from memshift.mcp.sse import Event, SseSplitter, encode, events
from memshift.proxy.headers import SERVED_BY, inbound
from memshift.proxy.mcp.exchange import McpRequest

log = structlog.get_logger("memshift.proxy")

_SESSION_LOWER = protocol.SESSION_HEADER.lower()
KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: clients ignore it, idle timers reset
Rewrite = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


def answer_headers(
    mcp: McpRequest, upstream: StreamedResponse | UpstreamResponse, store: StoreName
) -> list[tuple[str, str]]:
    """The store's answer headers as the client gets them: the proxy's session id."""
    out = [(k, v) for k, v in inbound(upstream.headers) if k.lower() != _SESSION_LOWER]
    if mcp.session is not None and header(upstream.headers, protocol.SESSION_HEADER):
        out.append((protocol.SESSION_HEADER, mcp.session.id))
    out.append((SERVED_BY, store))
    return out


def _is_ours(mcp: McpRequest, msg: Any) -> bool:
    return protocol.is_response(msg) and msg.get("id") == mcp.wire_id


def _theirs(mcp: McpRequest, msg: dict[str, Any]) -> dict[str, Any]:
    return {**msg, "id": mcp.msg_id}


async def _spaced(chunks: AsyncIterator[bytes], every: float | None) -> AsyncIterator[bytes | None]:
    """``chunks``, and None each time ``every`` seconds pass without one."""
    if every is None:
        async for chunk in chunks:
            yield chunk
        return
    iterator = aiter(chunks)
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
                yield None
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def stream(
    mcp: McpRequest,
    store: StoreName,
    upstream: StreamedResponse,
    keepalive_s: float | None = None,
) -> tuple[web.StreamResponse, dict[str, Any] | None]:
    """Relay ``store``'s answer as it arrives; return it and the response the client got.

    With ``keepalive_s``, a quiet stream gets a comment that often (``: keep-alive``).
    """
    headers = answer_headers(mcp, upstream, store)
    if not protocol.is_sse(upstream.headers):
        body = b"".join([chunk async for chunk in upstream.chunks])
        answer, response_msg = await whole(mcp, store, upstream, body, None)
        assert answer is not None, "nothing to refuse without a rewrite"
        return answer, response_msg
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(mcp.request)
    splitter = SseSplitter()
    final: dict[str, Any] | None = None
    try:
        async for chunk in _spaced(upstream.chunks, keepalive_s):
            if chunk is None:
                await response.write(KEEPALIVE)
                continue
            for event in splitter.feed(chunk):
                msg = event.message
                if _is_ours(mcp, msg):
                    final = _theirs(mcp, msg)
                    await response.write(encode(final, event))
                else:
                    await response.write(event.raw)
        if splitter.rest():
            await response.write(splitter.rest())
    except UpstreamError as exc:
        log.warning("mcp_stream_cut", store=store, error=str(exc))
    except ValueError as exc:  # an event past the size limit
        log.warning("mcp_stream_cut", store=store, error=str(exc))
    await response.write_eof()
    return response, final


async def whole(
    mcp: McpRequest,
    store: StoreName,
    upstream: StreamedResponse | UpstreamResponse,
    body: bytes,
    rewrite: Rewrite | None,
) -> tuple[web.Response | None, dict[str, Any] | None]:
    """The client's answer from a whole answer, the response rewritten by ``rewrite``.

    None when ``rewrite`` refuses the response (its ids cannot be translated).
    """
    headers = answer_headers(mcp, upstream, store)
    sse = protocol.is_sse(upstream.headers)
    parts: list[Event] | None = events(body) if sse else None
    found = [e.message for e in parts] if parts is not None else [protocol.loads(body)]
    final: dict[str, Any] | None = None
    for msg in found:
        if _is_ours(mcp, msg):
            final = await rewrite(msg) if rewrite is not None else msg
            if final is None:
                return None, None
            final = _theirs(mcp, final)
    if final is None:  # no response to this request in it: passed on as it came
        return web.Response(status=upstream.status, body=body, headers=headers), None
    if parts is None:
        return web.Response(
            status=upstream.status, body=orjson.dumps(final), headers=headers
        ), final
    out = b"".join(encode(final, e) if _is_ours(mcp, e.message) else e.raw for e in parts)
    return web.Response(status=upstream.status, body=out, headers=headers), final

"""A client's MCP session through the proxy: opened, told it is initialized, ended.

A 2025-era client initializes once and gets an ``Mcp-Session-Id`` minted here
(``sessions.py`` keeps it); behind it each store has its own session and negotiated
version. The client's ``initialize`` goes to the primary, whose answer the client
gets, and the same request goes to the secondary behind its back.
``notifications/initialized`` goes to both. The client's ``DELETE`` ends every store
session behind its own.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from memshift.config.settings import StoreName, other
from memshift.errors import UpstreamError
from memshift.links.mcp import StoreSession, open_session
from memshift.links.wire import OutboundRequest, header
from memshift.mcp import protocol
from memshift.proxy.headers import SERVED_BY
from memshift.proxy.mcp.exchange import McpRequest
from memshift.proxy.mcp.relay import answer_headers

log = structlog.get_logger("memshift.proxy")


async def initialize(mcp: McpRequest) -> web.StreamResponse:
    """Initialize the primary for the client, and the secondary behind its back."""
    parts = mcp.parts
    primary = parts.plane.state.primary
    secondary = other(primary)

    async def behind() -> StoreSession | None:
        try:
            opened, _ = await open_session(
                lambda r: parts.links.send(secondary, r, "mcp:initialize", "session"),
                mcp.path,
                mcp.caller_headers(),
                mcp.msg,
                notify=False,
            )
        except UpstreamError:
            return None
        return opened

    waiting = asyncio.ensure_future(behind())
    request = OutboundRequest("POST", mcp.path, tuple(mcp.store_headers(primary, None)), mcp.body)
    try:
        answer = await parts.links.send(primary, request, "mcp:initialize", "session")
    except BaseException:
        waiting.cancel()
        raise
    response = protocol.response_to(answer.body, protocol.is_sse(answer.headers), mcp.msg_id)
    result = response.get("result") if response else None
    sid = header(answer.headers, protocol.SESSION_HEADER)
    if answer.status == 200 and isinstance(result, dict) and sid:
        stores: dict[StoreName, StoreSession | None] = {
            primary: StoreSession(sid, str(result.get("protocolVersion", ""))),
            secondary: await waiting,
        }
        mcp.session = await parts.sessions.mint(dict(mcp.msg), stores)
        parts.metrics.mcp_sessions.set(len(parts.sessions))
        log.info("mcp_session_opened", session=mcp.session.id[:8], version=stores[primary])
    else:
        waiting.cancel()
    headers = answer_headers(mcp, answer, primary)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def notify(mcp: McpRequest) -> web.StreamResponse:
    """Forward a notification; ``notifications/initialized`` goes to both stores.

    A store's error reply to a notification (against the protocol) is dropped.
    """
    parts = mcp.parts
    primary = parts.plane.state.primary
    session = mcp.session
    if session is not None and mcp.msg.get("method") == "notifications/initialized":
        session.initialized = True
        behind = session.stores.get(other(primary))
        if behind is not None:
            headers = mcp.store_headers(other(primary), behind)
            request = OutboundRequest("POST", mcp.path, tuple(headers), mcp.body)
            try:
                await parts.links.send(other(primary), request, "mcp:notification", "session")
            except UpstreamError:
                session.stores[other(primary)] = None  # opened again when needed
        await parts.sessions.changed(session)
    upstream, body = await mcp.fetch(primary, mcp.body, "mcp", "mcp:notification")
    if body and protocol.bogus_reply(body):
        log.warning("mcp_bogus_notification_reply", store=primary, method=mcp.msg.get("method"))
        parts.metrics.mcp_dropped_replies.inc()
        return web.Response(status=202, headers={SERVED_BY: primary})
    return web.Response(
        status=upstream.status, body=body, headers=answer_headers(mcp, upstream, primary)
    )


async def end(mcp: McpRequest) -> web.StreamResponse:
    """The client ends its session: end every store session behind it."""
    parts = mcp.parts
    session = mcp.session
    assert session is not None
    await parts.sessions.drop(session.id)
    parts.metrics.mcp_sessions.set(len(parts.sessions))
    for store, behind in session.stores.items():
        if behind is None or not behind.id:
            continue
        request = OutboundRequest("DELETE", mcp.path, tuple(mcp.store_headers(store, behind)), b"")
        try:
            answer = await parts.links.send(store, request, "mcp:delete", "session")
        except UpstreamError:
            continue
        if answer.status not in (200, 202, 204, 404, 405):
            log.warning("mcp_session_end_refused", store=store, status=answer.status)
    log.info("mcp_session_closed", session=session.id[:8])
    return web.Response(status=200, headers={SERVED_BY: parts.plane.state.primary})

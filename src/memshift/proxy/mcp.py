"""MCP Streamable HTTP through the proxy: tool-aware, session-mapping, both eras.

A ``tools/call`` of a configured write tool is a write (logged, sent to the primary,
mirrored); of a read tool, a read (routed by the ramp, shadow-compared); of any other
tool, it goes to the primary only and is counted as unclassified. Every other method
(``initialize``, ``tools/list``, ``ping``, ``server/discover``...) goes to the primary.

2025-era clients get one ``Mcp-Session-Id`` minted here; behind it each store has its
own session and negotiated version (``mcp/sessions.py``). A store that forgot its
session (404) gets a new one from the client's ``initialize`` and the request is sent
again; the client never sees it. 2026-07-28 clients have no session: their requests
pass with their ``_meta`` and routing headers as they are.

Answers keep the form the store chose. An SSE answer is relayed event by event as it
arrives; only a tool result's ids are rewritten on the way (to legacy's). A store's
error reply to a notification is dropped. Ids in tool arguments and results are
translated through the id map like REST ids; where one has no pair, the read is
served by legacy.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiohttp import web
from yarl import URL

from memshift.config.settings import RouteSpec, StoreName, other
from memshift.control.ramp import reads_from_new
from memshift.errors import UpstreamError
from memshift.logs import bound
from memshift.mcp import protocol
from memshift.mcp.link import StoreSession, header, open_session
from memshift.mcp.sessions import ClientSession
from memshift.proxy.core import ProxyCore
from memshift.proxy.headers import SERVED_BY, fresh_id, inbound, with_header
from memshift.proxy.shadowread import ReadCopy, schedule
from memshift.proxy.writes import Accepted, identity, mirrored
from memshift.shadow.dispatch import record_keys
from memshift.shadow.mirror import Write
from memshift.shadow.routes import RouteMatch
from memshift.upstream import OutboundRequest, StreamedResponse, UpstreamResponse

log = structlog.get_logger("memshift.proxy")

_SESSION_LOWER = protocol.SESSION_HEADER.lower()
_VERSION_LOWER = protocol.VERSION_HEADER.lower()


def rpc_error(
    msg_id: Any, status: int, code: int, message: str, store: str | None = None
) -> web.Response:
    """Return a JSON-RPC error answer (memshift's own, never a traceback)."""
    body = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if store:
        response.headers[SERVED_BY] = store
    return response


@dataclass
class McpExchange:
    """One client request to the MCP endpoint on its way through the proxy."""

    core: ProxyCore
    request: web.Request
    body: bytes
    msg: Any
    headers: list[tuple[str, str]]
    rid: str
    session: ClientSession | None = None
    response: dict[str, Any] | None = None  # the JSON-RPC response the client got

    @property
    def msg_id(self) -> Any:
        return self.msg.get("id") if isinstance(self.msg, dict) else None

    def caller_headers(self) -> list[tuple[str, str]]:
        """The headers that say who calls: what a store needs to open a session."""
        return [(k, v) for k, v in self.headers if k.lower() in ("authorization", "x-request-id")]

    def store_headers(
        self, store: StoreName, session: StoreSession | None
    ) -> list[tuple[str, str]]:
        """The client's headers as ``store`` must get them: its session, version, origin."""
        out = [(k, v) for k, v in self.headers if k.lower() not in (_SESSION_LOWER, _VERSION_LOWER)]
        origin = header(tuple(out), "Origin")
        if origin is not None:
            url = URL(self.core.holder.current.stores[store].url)
            out = with_header(out, "Origin", str(url.origin()))
        version = self.request.headers.get(protocol.VERSION_HEADER)
        if session is not None:
            version = session.version
            if session.id:
                out.append((protocol.SESSION_HEADER, session.id))
        if version:
            out.append((protocol.VERSION_HEADER, version))
        return out

    async def store_session(
        self, store: StoreName, stale: StoreSession | None = None
    ) -> StoreSession | None:
        """Return this client's session with ``store``, opening it when there is none.

        ``stale`` is a session the store answered 404 for: it is replaced.
        """
        session = self.session
        if session is None:
            return None
        async with session.locks[store]:
            current = session.stores.get(store)
            if current is not None and current != stale:
                return current
            opened, _answer = await open_session(
                lambda r: self.core.send(store, r, "mcp:initialize", "session"),
                self.core.holder.current.mcp.path,
                self.caller_headers(),
                session.init,
                notify=True,
            )
            session.stores[store] = opened
            await self.core.sessions.changed(session)
            log.info("mcp_store_session_opened", store=store, renewed=stale is not None)
            return opened

    @asynccontextmanager
    async def open(
        self,
        store: StoreName,
        body: bytes,
        purpose: str,
        route: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Send the request to ``store`` in this client's session; re-open it once on 404.

        The answer's body is read while the context is open.
        """
        path = self.core.holder.current.mcp.path
        for attempt in (1, 2):
            session = await self.store_session(store) if self.session is not None else None
            if self.session is not None and session is None:
                raise UpstreamError(store, "refused to open an MCP session")
            headers = self.store_headers(store, session) + (extra or [])
            request = OutboundRequest(self.request.method, path, tuple(headers), body)
            async with self.core.open_stream(store, request, route, purpose) as answer:
                expired = answer.status == 404 and session is not None and bool(session.id)
                if not expired or attempt == 2:
                    yield answer
                    return
            log.info("mcp_store_session_expired", store=store)
            await self.store_session(store, stale=session)

    async def fetch(
        self,
        store: StoreName,
        body: bytes,
        purpose: str,
        route: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> tuple[StreamedResponse, bytes]:
        """Send the request to ``store`` and read its whole answer."""
        async with self.open(store, body, purpose, route, extra) as answer:
            return answer, b"".join([chunk async for chunk in answer.chunks])


def _answer_headers(
    ex: McpExchange, upstream: StreamedResponse | UpstreamResponse, store: StoreName
) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in inbound(upstream.headers) if k.lower() != _SESSION_LOWER]
    if ex.session is not None and header(upstream.headers, protocol.SESSION_HEADER):
        out.append((protocol.SESSION_HEADER, ex.session.id))
    out.append((SERVED_BY, store))
    return out


Rewrite = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


async def relay(
    ex: McpExchange,
    store: StoreName,
    upstream: StreamedResponse,
    rewrite: Rewrite | None,
) -> web.StreamResponse:
    """Send ``store``'s answer to the client in its own form, rewriting the response message.

    ``rewrite`` gets the JSON-RPC response meant for this request and returns the one
    the client gets (ids translated; or another store's answer). An SSE answer is
    written event by event as it arrives.
    """
    headers = _answer_headers(ex, upstream, store)
    if not protocol.is_sse(upstream.headers):
        body = b"".join([chunk async for chunk in upstream.chunks])
        msg = protocol.loads(body)
        if rewrite is not None and protocol.is_response(msg) and msg.get("id") == ex.msg_id:
            final = await rewrite(msg) or _unanswerable(ex.msg_id)
            ex.response = final
            body = orjson.dumps(final)
        elif protocol.is_response(msg):
            ex.response = msg
        return web.Response(status=upstream.status, body=body, headers=headers)
    response = web.StreamResponse(status=upstream.status, headers=headers)
    await response.prepare(ex.request)
    reader = protocol.SseReader()
    try:
        async for chunk in upstream.chunks:
            for event in reader.feed(chunk):
                msg = event.message
                if protocol.is_response(msg) and msg.get("id") == ex.msg_id:
                    final = msg
                    if rewrite is not None:
                        final = await rewrite(msg) or _unanswerable(ex.msg_id)
                    ex.response = final
                    if rewrite is not None:
                        await response.write(protocol.with_message(event, final))
                        continue
                await response.write(event.raw)
        if reader.rest():
            await response.write(reader.rest())
    except UpstreamError as exc:
        log.warning("mcp_stream_cut", store=store, error=str(exc))
    await response.write_eof()
    return response


def whole(upstream: StreamedResponse, body: bytes) -> StreamedResponse:
    """``upstream`` again, its body already read, for ``relay``."""

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return StreamedResponse(upstream.status, upstream.headers, chunks(), upstream.elapsed_s)


def _unanswerable(msg_id: Any) -> dict[str, Any]:
    """The response sent when no store's answer can reach the client with legacy's ids."""
    message = "the answer names records that are not migrated yet; try again"
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": message}}


def _translating(ex: McpExchange, spec: RouteSpec | None, store: StoreName) -> Rewrite | None:
    """A rewrite translating a tool result's ids from ``store``'s to legacy's."""
    if spec is None or store == "legacy" or not spec.response_ids:
        return None

    async def rewrite(msg: dict[str, Any]) -> dict[str, Any] | None:
        status, doc = protocol.tool_outcome(msg)
        if status != 200 or not isinstance(doc, dict | list):
            return msg
        if not await ex.core.translator.document(doc, spec.response_ids, store, "legacy"):
            return None
        protocol.replace_result(msg, doc)
        return msg

    return rewrite


def _with_arguments(msg: dict[str, Any], args: dict[str, Any]) -> bytes:
    out = dict(msg)
    out["params"] = {**msg["params"], "arguments": args}
    return orjson.dumps(out)


async def _arguments_for(
    ex: McpExchange, spec: RouteSpec, args: dict[str, Any], store: StoreName
) -> bytes | None:
    """Return the request body ``store`` must get (ids translated); None when unmapped."""
    if store == "legacy" or not spec.request_ids:
        return ex.body
    translated = dict(args)
    if not await ex.core.translator.document(translated, spec.request_ids, "legacy", store):
        return None
    return _with_arguments(ex.msg, translated)


async def _passthrough(ex: McpExchange, route: str) -> web.StreamResponse:
    """Send the request to the primary; the client gets its answer, streamed."""
    primary = ex.core.plane.state.primary
    async with ex.open(primary, ex.body, "mcp", route) as upstream:
        return await relay(ex, primary, upstream, None)


async def _initialize(ex: McpExchange) -> web.StreamResponse:
    """Initialize the primary for the client, and the secondary behind its back."""
    core = ex.core
    primary = core.plane.state.primary
    path = core.holder.current.mcp.path

    async def secondary() -> StoreSession | None:
        try:
            opened, _ = await open_session(
                lambda r: core.send(other(primary), r, "mcp:initialize", "session"),
                path,
                ex.caller_headers(),
                ex.msg,
                notify=False,
            )
        except UpstreamError:
            return None
        return opened

    behind = asyncio.ensure_future(secondary())
    request = OutboundRequest("POST", path, tuple(ex.store_headers(primary, None)), ex.body)
    try:
        answer = await core.send(primary, request, "mcp:initialize", "session")
    except BaseException:
        behind.cancel()
        raise
    sse = protocol.is_sse(answer.headers)
    response = protocol.response_to(answer.body, sse, ex.msg_id)
    result = response.get("result") if response else None
    sid = header(answer.headers, protocol.SESSION_HEADER)
    stores: dict[StoreName, StoreSession | None] = {}
    if answer.status == 200 and isinstance(result, dict) and sid:
        stores[primary] = StoreSession(sid, str(result.get("protocolVersion", "")))
        stores[other(primary)] = await behind
        ex.session = await core.sessions.mint(dict(ex.msg), stores)
        core.metrics.mcp_sessions.set(len(core.sessions))
        log.info("mcp_session_opened", session=ex.session.id[:8], version=stores[primary])
    else:
        behind.cancel()
    headers = _answer_headers(ex, answer, primary)
    return web.Response(status=answer.status, body=answer.body, headers=headers)


async def _notify(ex: McpExchange) -> web.StreamResponse:
    """Forward a notification; ``notifications/initialized`` goes to both stores."""
    core = ex.core
    primary = core.plane.state.primary
    session = ex.session
    if session is not None and ex.msg.get("method") == "notifications/initialized":
        session.initialized = True
        behind = session.stores.get(other(primary))
        if behind is not None:
            headers = ex.store_headers(other(primary), behind)
            request = OutboundRequest("POST", core.holder.current.mcp.path, tuple(headers), ex.body)
            try:
                await core.send(other(primary), request, "mcp:notification", "session")
            except UpstreamError:
                session.stores[other(primary)] = None  # opened again when needed
        await core.sessions.changed(session)
    upstream, body = await ex.fetch(primary, ex.body, "mcp", "mcp:notification")
    if body and protocol.bogus_reply(body):
        log.warning("mcp_bogus_notification_reply", store=primary, method=ex.msg.get("method"))
        core.metrics.mcp_dropped_replies.inc()
        return web.Response(status=202, headers={SERVED_BY: primary})
    return web.Response(
        status=upstream.status, body=body, headers=_answer_headers(ex, upstream, primary)
    )


async def _end(ex: McpExchange) -> web.StreamResponse:
    """The client ends its session: end every store session behind it."""
    session = ex.session
    assert session is not None
    await ex.core.sessions.drop(session.id)
    ex.core.metrics.mcp_sessions.set(len(ex.core.sessions))
    path = ex.core.holder.current.mcp.path
    for store, behind in session.stores.items():
        if behind is None or not behind.id:
            continue
        request = OutboundRequest("DELETE", path, tuple(ex.store_headers(store, behind)), b"")
        try:
            answer = await ex.core.send(store, request, "mcp:delete", "session")
        except UpstreamError:
            continue
        if answer.status not in (200, 202, 204, 404, 405):
            log.warning("mcp_session_end_refused", store=store, status=answer.status)
    log.info("mcp_session_closed", session=session.id[:8])
    return web.Response(status=200, headers={SERVED_BY: ex.core.plane.state.primary})


async def _tool_write(ex: McpExchange, spec: RouteSpec, args: dict[str, Any]) -> web.StreamResponse:
    core = ex.core
    primary = core.plane.state.primary
    key = ex.request.headers.get("Idempotency-Key") or f"memshift-{fresh_id()}"
    extra = [("Idempotency-Key", key)]
    ex.headers = [(k, v) for k, v in ex.headers if k.lower() != "idempotency-key"]
    user = await identity(core, ex.request.headers.get("Authorization"), ex.rid, primary)
    if user is None:
        return await _passthrough(ex, spec.name)
    match = RouteMatch(spec, ())
    own, depends = record_keys(match, args)
    args_body = orjson.dumps(args)
    write = Write(match, protocol.TOOL, spec.path, args_body, key, user, ex.rid)

    async def forward() -> Accepted[tuple[StreamedResponse, bytes] | None]:
        body = await _arguments_for(ex, spec, args, primary)
        if body is None:
            return Accepted(False, 409, b"", None)
        upstream, content = await ex.fetch(primary, body, "write", spec.name, extra)
        status, doc = upstream.status, None
        if status == 200:
            sse = protocol.is_sse(upstream.headers)
            status, doc = protocol.tool_outcome(protocol.response_to(content, sse, ex.msg_id))
        return Accepted(status == 200, status, orjson.dumps(doc), (upstream, content))

    answered = await mirrored(core, write, own, depends, primary, forward)
    if answered is None:
        return rpc_error(
            ex.msg_id, 409, -32603, "the record is not in the primary store yet", primary
        )
    return await relay(ex, primary, whole(*answered), _translating(ex, spec, primary))


async def _tool_read(ex: McpExchange, spec: RouteSpec, args: dict[str, Any]) -> web.StreamResponse:
    core, state = ex.core, ex.core.plane.state
    match = RouteMatch(spec, ())
    fence = record_keys(match, args)[0]
    before = core.lanes.snapshot(fence)
    sticky = ex.request.headers.get(core.holder.current.routing.sticky_header) or (
        ex.request.remote or ""
    )
    served: StoreName = "legacy"
    answer: web.StreamResponse | None = None
    if reads_from_new(sticky, state.read_percent):
        answer = await _read_from_new(ex, spec, args)
        served = "new" if answer is not None else "legacy"
    if answer is None:
        async with ex.open("legacy", ex.body, "read", spec.name) as upstream:
            answer = await relay(ex, "legacy", upstream, None)
    final = ex.response
    if final is not None and random.random() * 100 < state.shadow_read_percent:
        status, doc = protocol.tool_outcome(final)
        copy = ReadCopy(
            match, protocol.TOOL, spec.path, orjson.dumps(args), tuple(ex.headers), fence, before
        )
        schedule(core, copy, served, status, orjson.dumps(doc))
    return answer


async def _read_from_new(
    ex: McpExchange, spec: RouteSpec, args: dict[str, Any]
) -> web.StreamResponse | None:
    """Serve a read from new; None (and legacy serves it) when new cannot."""
    core = ex.core
    body = await _arguments_for(ex, spec, args, "new")
    if body is None:
        core.metrics.read_fallbacks.labels("unmapped_request").inc()
        return None
    translate = _translating(ex, spec, "new")

    async def rewrite(msg: dict[str, Any]) -> dict[str, Any] | None:
        final = await translate(msg) if translate is not None else msg
        if final is not None:
            return final
        core.metrics.read_fallbacks.labels("unmapped_answer").inc()
        return await _legacy_response(ex, spec)

    try:
        async with ex.open("new", body, "read", spec.name) as upstream:
            if upstream.status >= 500:
                core.metrics.read_fallbacks.labels("new_error").inc()
                return None
            return await relay(ex, "new", upstream, rewrite)
    except UpstreamError:
        core.metrics.read_fallbacks.labels("new_unavailable").inc()
        return None


async def _legacy_response(ex: McpExchange, spec: RouteSpec) -> dict[str, Any] | None:
    """Return legacy's response message to this request (the fallback for one from new)."""
    upstream, body = await ex.fetch("legacy", ex.body, "read", spec.name)
    return protocol.response_to(body, protocol.is_sse(upstream.headers), ex.msg_id)


async def _dispatch(ex: McpExchange) -> web.StreamResponse:
    core = ex.core
    settings = core.holder.current
    msg = ex.msg
    if protocol.is_notification(msg):
        return await _notify(ex)
    call = protocol.tool_call(msg)
    if call is None:
        method = msg.get("method") if isinstance(msg, dict) else None
        return await _passthrough(ex, f"mcp:{method}" if isinstance(method, str) else "mcp:other")
    name, args = call
    spec = settings.tool(name)
    with bound(tool=name):
        if spec is not None and name in settings.mcp.write_tools:
            return await _tool_write(ex, spec, args)
        if spec is not None and name in settings.mcp.read_tools:
            return await _tool_read(ex, spec, args)
        core.metrics.unclassified_tool(name)
        log.warning("mcp_unclassified_tool", tool=name)
        return await _passthrough(ex, "mcp:tools/call (unclassified)")


async def handle_mcp(
    core: ProxyCore, request: web.Request, body: bytes, headers: list[tuple[str, str]], rid: str
) -> web.StreamResponse:
    """Serve one request to the MCP endpoint."""
    msg = protocol.loads(body) if request.method == "POST" else None
    ex = McpExchange(core, request, body, msg, headers, rid)
    if isinstance(msg, list):
        return rpc_error(None, 400, -32600, "JSON-RPC batches are not accepted through memshift")
    modern = protocol.is_modern(request.headers.get(protocol.VERSION_HEADER))
    sid = request.headers.get(protocol.SESSION_HEADER)
    if sid and not modern:
        ex.session = await core.sessions.get(sid)
        if ex.session is None:
            return rpc_error(ex.msg_id, 404, -32001, "Session not found")
    try:
        if request.method == "DELETE" and ex.session is not None:
            return await _end(ex)
        if request.method != "POST":
            return await _passthrough(ex, f"mcp:{request.method}")
        if not isinstance(msg, dict):
            return await _passthrough(ex, "mcp:other")
        if msg.get("method") == "initialize" and ex.session is None and not modern:
            return await _initialize(ex)
        return await _dispatch(ex)
    except UpstreamError as exc:
        status = 504 if exc.timeout else 502
        what = "timed out" if exc.timeout else "cannot be reached"
        return rpc_error(ex.msg_id, status, -32603, f"the {exc.store} store {what}", exc.store)

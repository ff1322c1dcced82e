"""The request path: classify, route, forward, mirror, answer.

Reads go to the store the ramp gives the caller; a read meant for the new store that
cannot be translated, or that the new store fails, is served by legacy instead.
Writes go to the primary; once it accepted them they are mirrored to the secondary
before the answer (``write_mode = "sync"``), and the client always gets the primary's
status and body. Requests matching no configured route go to the primary only. Ids a
client sends and sees are always legacy's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Coroutine
from typing import Any

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict

from memshift.config.settings import StoreName
from memshift.control.ramp import reads_from_new
from memshift.errors import UpstreamError
from memshift.jsonpath import document_of
from memshift.logs import bind, unbind
from memshift.proxy.core import ProxyCore
from memshift.proxy.headers import (
    SERVED_BY,
    fresh_id,
    inbound,
    outbound,
    request_id,
    with_header,
)
from memshift.proxy.mcp import handle_mcp
from memshift.proxy.metrics import STATUS_CLASS
from memshift.proxy.shadowread import ReadCopy, schedule
from memshift.proxy.writes import Accepted, identity, mirrored
from memshift.shadow.dispatch import record_keys
from memshift.shadow.mirror import Write
from memshift.shadow.routes import match_route
from memshift.upstream import OutboundRequest, UpstreamResponse
from memshift.webutil import answer_errors, error_response

log = structlog.get_logger("memshift.proxy")

CORE = web.AppKey("proxy_core", ProxyCore)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _outbound(request: web.Request, rid: str) -> list[tuple[str, str]]:
    return outbound(
        request.headers,
        request.headers.items(),
        remote=request.remote,
        scheme=request.scheme,
        rid=rid,
    )


class Exchange:
    """One client request on its way through the proxy."""

    def __init__(self, core: ProxyCore, request: web.Request, body: bytes, rid: str) -> None:
        self.core = core
        self.request = request
        self.body = body
        self.rid = rid
        settings = core.holder.current
        self.match = match_route(settings.routes, request.method, request.path)
        self.route = self.match.spec.name if self.match else "unrouted"
        self.headers = _outbound(request, rid)

    async def _target(self, store: StoreName) -> tuple[str, bytes] | None:
        """Return path and body for ``store`` with ids translated; None if one is unmapped."""
        if self.match is None or store == "legacy":  # client ids are legacy's
            return self.request.rel_url.raw_path_qs, self.body
        return await self.core.translator.request(
            self.match, self.request.rel_url.raw_path_qs, self.body, store
        )

    async def send(
        self, store: StoreName, purpose: str, headers: list[tuple[str, str]] | None = None
    ) -> UpstreamResponse | None:
        """Send the request to ``store``; None if its ids cannot be translated."""
        target = await self._target(store)
        if target is None:
            return None
        request = OutboundRequest(
            self.request.method, target[0], tuple(headers or self.headers), target[1]
        )
        return await self.core.send(store, request, self.route, purpose)

    async def answer(self, store: StoreName, upstream: UpstreamResponse) -> web.Response | None:
        """Return the client's answer from ``store``'s; None if its ids cannot be translated."""
        body = upstream.body
        paths = self.match.spec.response_ids if self.match else ()
        if store != "legacy" and paths and body:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if doc is not None:
                if not await self.core.translator.document(doc, paths, store, "legacy"):
                    return None
                body = orjson.dumps(doc)
        headers = CIMultiDict(inbound(upstream.headers))
        headers[SERVED_BY] = store
        return web.Response(status=upstream.status, body=body, headers=headers)


async def _read(ex: Exchange) -> web.Response:
    """Serve a read; schedule its shadow comparison once the answer is ready."""
    core, state = ex.core, ex.core.plane.state
    if ex.match is None or random.random() * 100 >= state.shadow_read_percent:
        return await _serve_read(ex)
    fence = record_keys(ex.match, None)[0]
    before = core.lanes.snapshot(fence)
    answer = await _serve_read(ex)
    copy = ReadCopy(
        ex.match,
        ex.request.method,
        ex.request.rel_url.raw_path_qs,
        ex.body,
        tuple(ex.headers),
        fence,
        before,
    )
    served: StoreName = "new" if answer.headers[SERVED_BY] == "new" else "legacy"
    body = answer.body if isinstance(answer.body, bytes | bytearray) else b""
    schedule(core, copy, served, answer.status, bytes(body))
    return answer


async def _serve_read(ex: Exchange) -> web.Response:
    core, state = ex.core, ex.core.plane.state
    sticky = ex.request.headers.get(core.holder.current.routing.sticky_header) or (
        ex.request.remote or ""
    )
    if ex.match is not None and reads_from_new(sticky, state.read_percent):
        reason = "unmapped_request"
        try:
            upstream = await ex.send("new", "read")
        except UpstreamError:
            upstream, reason = None, "new_unavailable"
        if upstream is not None and upstream.status >= 500:
            upstream, reason = None, "new_error"
        if upstream is not None:
            answer = await ex.answer("new", upstream)
            if answer is not None:
                return answer
            reason = "unmapped_answer"
        core.metrics.read_fallbacks.labels(reason).inc()
    upstream = await ex.send("legacy", "read")
    assert upstream is not None, "legacy needs no translation"
    answer = await ex.answer("legacy", upstream)
    assert answer is not None
    return answer


async def _write(ex: Exchange) -> web.Response:
    assert ex.match is not None
    core = ex.core
    primary = core.plane.state.primary
    key = ex.request.headers.get("Idempotency-Key") or f"memshift-{fresh_id()}"
    headers = with_header(ex.headers, "Idempotency-Key", key)
    user = await identity(core, ex.request.headers.get("Authorization"), ex.rid, primary)
    if user is None:  # the primary does not know this caller: it refuses, nothing to mirror
        return await _answer_write(ex, primary, await ex.send(primary, "write", headers))
    own, depends = record_keys(ex.match, document_of(ex.body))
    write = Write(
        ex.match, ex.request.method, ex.request.rel_url.raw_path_qs, ex.body, key, user, ex.rid
    )

    async def forward() -> Accepted[UpstreamResponse | None]:
        upstream = await ex.send(primary, "write", headers)
        if upstream is None:
            return Accepted(False, 0, b"", None)
        return Accepted(200 <= upstream.status < 300, upstream.status, upstream.body, upstream)

    upstream = await mirrored(core, write, own, depends, primary, forward)
    return await _answer_write(ex, primary, upstream)


async def _answer_write(
    ex: Exchange, primary: StoreName, upstream: UpstreamResponse | None
) -> web.Response:
    if upstream is None:
        return error_response(409, "not_migrated", "the record is not in the primary store yet")
    answer = await ex.answer(primary, upstream)
    if answer is None:
        log.error("answer_not_translatable", store=primary, route=ex.route)
        answer = await ex.answer("legacy", upstream)
        assert answer is not None
        answer.headers[SERVED_BY] = primary
    return answer


async def _unrouted(ex: Exchange) -> web.Response:
    primary = ex.core.plane.state.primary
    ex.core.metrics.unrouted.labels(ex.request.method).inc()
    log.warning("unrouted_request", method=ex.request.method, path=ex.request.path)
    upstream = await ex.core.send(
        primary,
        OutboundRequest(
            ex.request.method, ex.request.rel_url.raw_path_qs, tuple(ex.headers), ex.body
        ),
        ex.route,
        "unrouted",
    )
    headers = CIMultiDict(inbound(upstream.headers))
    headers[SERVED_BY] = primary
    return web.Response(status=upstream.status, body=upstream.body, headers=headers)


def _rest(ex: Exchange) -> Coroutine[Any, Any, web.StreamResponse]:
    if ex.match is None:
        return _unrouted(ex)
    if ex.request.method in WRITES:
        return _write(ex)
    return _read(ex)


async def handle(request: web.Request) -> web.StreamResponse:
    """Serve one client request (REST or MCP) through the proxy; errors become JSON."""
    return await answer_errors(request, _serve)


async def _serve(request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    core = request.app[CORE]
    rid = request_id(request.headers)
    body = await request.read()
    if request.path == core.holder.current.mcp.path:
        route = "mcp"
        work = handle_mcp(core, request, body, _outbound(request, rid), rid)
    else:
        ex = Exchange(core, request, body, rid)
        route = ex.route
        work = _rest(ex)
    context = bind(request_id=rid, route=route)
    try:
        try:
            response = await work
        except UpstreamError as exc:
            code = "upstream_timeout" if exc.timeout else "upstream_unavailable"
            response = error_response(
                504 if exc.timeout else 502,
                code,
                f"the {exc.store} store {'timed out' if exc.timeout else 'cannot be reached'}",
            )
            response.headers[SERVED_BY] = exc.store
        served = response.headers.get(SERVED_BY, "")
        core.metrics.client_outcome(route, served, STATUS_CLASS[response.status // 100]).inc()
        log.info(
            "request",
            method=request.method,
            store=served,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    finally:
        unbind(context)
    return response

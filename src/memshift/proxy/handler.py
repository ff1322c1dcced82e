"""The client side's one handler: decode by protocol, hand to the request policy, answer.

A request to ``[mcp] path`` is MCP (``mcp/dispatch.py``); any other is REST: a
configured route's reads go to the read path and its writes to the write path, and a
request matching no route goes to the primary alone (``rest.unrouted``). A store that
gives no answer becomes 502 or 504 in the protocol's own error form; no traceback ever
reaches a client. Every answer carries ``X-Memshift-Served-By``.

A body is read within ``[proxy]``'s limits (``limits.py``) before anything else: one
over the size, too slow, in an unknown encoding or nested deeper than a store takes
is refused here, and never reaches a store or the write log.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
from aiohttp import web

from memshift.control.callers import CALLER, caller_of
from memshift.errors import UpstreamError
from memshift.limits import depth_error, raw_too_deep
from memshift.logs import bind, unbind
from memshift.proxy.call import upstream_failure
from memshift.proxy.headers import SERVED_BY, outbound, request_id
from memshift.proxy.instance import Proxy
from memshift.proxy.mcp.dispatch import handle_mcp
from memshift.proxy.metrics import STATUS_CLASS
from memshift.proxy.rest import RestCall, unrouted
from memshift.shadow.routes import match_route
from memshift.webutil import answer_errors, error_response, read_body

log = structlog.get_logger("memshift.proxy")


def handler_for(proxy: Proxy) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The handler serving every client request (REST or MCP) through ``proxy``.

    Errors become JSON. It needs nothing of aiohttp's router: it is served directly
    (``serving.DIRECT``).
    """
    serve = partial(_serve, proxy)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await answer_errors(request, serve)

    return handle


async def _serve(proxy: Proxy, request: web.Request) -> web.StreamResponse:
    started = time.perf_counter()
    settings = proxy.holder.current
    rid = request_id(request.headers)
    limits = settings.proxy
    body = await read_body(request, limits.max_body_bytes, limits.body_timeout_s)
    if raw_too_deep(body, limits.max_json_depth):
        raise depth_error(limits.max_json_depth)
    headers = outbound(
        request.headers,
        request.headers.items(),
        remote=request.remote,
        scheme=request.scheme,
        rid=rid,
    )
    work: Awaitable[web.StreamResponse]
    if request.path == settings.mcp.path:
        route = "mcp"
        work = handle_mcp(proxy.mcp, proxy.reads, proxy.writes, request, body, headers, rid)
    elif (match := match_route(settings.routes, request.method, request.path)) is None:
        route = "unrouted"
        work = unrouted(proxy.links, proxy.plane, proxy.metrics, request, body, headers)
    else:
        call = RestCall(proxy.rest, request, body, rid, match, headers)
        route = call.route
        work = proxy.writes.write(call) if call.is_write else proxy.reads.read(call)
    context = bind(request_id=rid, route=route)
    caller = CALLER.set(caller_of(request.headers, request.remote))
    try:
        try:
            response = await work
        except UpstreamError as exc:
            status, code, message = upstream_failure(exc)
            response = error_response(status, code, message)
            response.headers[SERVED_BY] = exc.store
        served = response.headers.get(SERVED_BY, "")
        proxy.metrics.client_outcome(route, served, STATUS_CLASS[response.status // 100]).inc()
        log.info(
            "request",
            method=request.method,
            store=served,
            status=response.status,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    finally:
        CALLER.reset(caller)
        unbind(context)
    return response

"""Serve one aiohttp request through an ASGI application, streaming both ways.

The MCP SDK's Streamable HTTP transport is an ASGI application; the store serves it
on its own aiohttp listener through this bridge, so that REST and MCP share one port,
one auth middleware and one body limit. The request body is passed on as it
arrives; the answer is written as the application sends it (an SSE stream reaches
the client event by event).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from aiohttp import web

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHUNK = 64 * 1024


def _scope(request: web.Request, extra: dict[str, Any]) -> Scope:
    host, port = "", 0
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = sockname[0], sockname[1]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.raw_path.partition("?")[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"),
        "root_path": "",
        # The body reaches the application decoded: no Content-Encoding goes with it.
        "headers": [
            (k.lower(), v) for k, v in request.raw_headers if k.lower() != b"content-encoding"
        ],
        "client": (request.remote or "", 0),
        "server": (host, port),
        "state": {},
        **extra,
    }


async def serve_asgi(
    app: AsgiApp, request: web.Request, extra: dict[str, Any], body: bytes | None = None
) -> web.StreamResponse:
    """Run ``app`` for ``request``; return the (already sent) answer.

    ``body``: the request's body, already read (and decoded); else it is streamed.
    """
    finished = asyncio.Event()
    response: web.StreamResponse | None = None
    started: Message | None = None
    body_done = False

    async def receive() -> Message:
        nonlocal body_done
        if not body_done and body is not None:
            body_done = True
            return {"type": "http.request", "body": body, "more_body": False}
        if not body_done:
            chunk = await request.content.read(CHUNK)
            body_done = request.content.at_eof()
            return {"type": "http.request", "body": chunk, "more_body": not body_done}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal response, started
        if message["type"] == "http.response.start":
            started = message
            return
        if message["type"] != "http.response.body" or started is None:
            return
        if response is None:
            response = web.StreamResponse(status=started["status"])
            for name, value in started.get("headers", []):
                key = name.decode("latin-1")
                if key.lower() in ("content-length", "transfer-encoding"):
                    continue
                response.headers.add(key, value.decode("latin-1"))
            more = message.get("more_body", False)
            if not more:
                response.content_length = len(message.get("body", b""))
            await response.prepare(request)
        chunk = message.get("body", b"")
        if chunk:
            await response.write(chunk)
        if not message.get("more_body", False):
            await response.write_eof()
            finished.set()

    try:
        await app(_scope(request, extra), receive, send)
    finally:
        finished.set()
    if response is None:  # the application ended without answering
        if started is not None:
            return web.Response(status=started["status"])
        return web.json_response(
            {"error": {"code": "internal", "message": "the MCP endpoint did not answer"}},
            status=500,
        )
    return response

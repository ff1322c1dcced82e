"""JSON answers, the error middleware and body reading shared by every memshift HTTP server.

Every failure becomes ``{"error": {"code", "message"}}`` with a fitting status; an
unexpected exception is logged and answered 500 with no detail, so no traceback ever
reaches a client.

A body is read (``read_body``) within a size limit (a ``Content-Length`` over it is
refused before a byte is read; a body without one is cut off at the limit), with a
pause limit between its pieces (a client that stops sending half-way gets 408, not a
connection held for ever), and in an encoding aiohttp decodes (anything else is 415,
a body that does not decode 400).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from memshift.config.settings import Listen
from memshift.errors import ApiError, ConfigError

log = structlog.get_logger("memshift.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
# Content-Encodings aiohttp decodes on its own; the body memshift sees is decoded.
DECODED = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


def json_response(payload: Any, status: int = 200) -> web.Response:
    """Return ``payload`` as a JSON answer."""
    return web.Response(status=status, body=orjson.dumps(payload), content_type="application/json")


def error_response(status: int, code: str, message: str) -> web.Response:
    """Return the JSON error answer."""
    return json_response({"error": {"code": code, "message": message}}, status)


async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler``; turn ``ApiError``, HTTP errors and anything unexpected into JSON."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.message)
        if exc.close:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return error_response(500, "internal_error", "internal error")


def listen_problem(exc: OSError, listen: Listen) -> str:
    """What went wrong listening on ``listen``, in a few words."""
    why = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    return f"cannot listen on {listen}: {why}"


def check_free(listens: list[tuple[Listen, str]]) -> None:
    """Raise ``ConfigError`` naming the first setting whose address cannot be listened on."""
    for listen, key in listens:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((listen.host, listen.port))
            except OSError as exc:
                raise ConfigError(key, listen_problem(exc, listen)) from None


def too_large(limit: int) -> ApiError:
    """The error of a body over ``limit`` bytes (the rest of it is not read)."""
    return ApiError(413, "payload_too_large", f"the body is over {limit} bytes", close=True)


def check_encoding(request: web.BaseRequest) -> None:
    """Refuse a ``Content-Encoding`` the body cannot be read in (415)."""
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in DECODED:
        why = "Content-Encoding must be gzip, deflate or identity"
        raise ApiError(415, "unsupported_encoding", why, close=True)


def check_length(request: web.BaseRequest, limit: int) -> None:
    """Refuse a declared ``Content-Length`` over ``limit`` before reading the body (413)."""
    if (request.content_length or 0) > limit:
        raise too_large(limit)


async def read_body(request: web.BaseRequest, limit: int, pause_s: float) -> bytes:
    """The request's whole body, decoded, at most ``limit`` bytes.

    413 when it is (or says it is) larger, 408 when the client pauses ``pause_s``
    between two pieces, 415 or 400 for an encoding that cannot be read.
    """
    if not request.body_exists:
        return b""
    check_encoding(request)
    check_length(request, limit)
    parts: list[bytes] = []
    size = 0
    content = request.content
    try:
        while True:
            # What has arrived is taken as it is; a deadline only for waiting on more
            # (a small body is in whole with its headers: no timer at all).
            chunk = content.read_nowait()
            if not chunk:
                if content.at_eof():
                    break
                async with asyncio.timeout(pause_s):
                    chunk = await content.readany()
                if not chunk:
                    break
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            parts.append(chunk)
    except TimeoutError:
        why = f"the body stopped arriving for {pause_s:g} s"
        raise ApiError(408, "request_timeout", why, close=True) from None
    except RequestPayloadError as exc:
        why = f"the body cannot be read: {_first_line(exc)}"
        raise ApiError(400, "bad_body", why, close=True) from None
    return b"".join(parts)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(exc).__name__

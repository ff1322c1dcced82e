"""JSON answers and the error middleware shared by every memshift HTTP server.

Every failure becomes ``{"error": {"code", "message"}}`` with a fitting status; an
unexpected exception is logged and answered 500 with no detail, so no traceback ever
reaches a client.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from memshift.config.settings import Listen
from memshift.errors import ApiError, ConfigError

log = structlog.get_logger("memshift.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


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

"""JSON answers and the error middleware shared by every memshift HTTP server.

Every failure becomes ``{"error": {"code", "message"}}`` with a fitting status; an
unexpected exception is logged and answered 500 with no detail, so no traceback ever
reaches a client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from memshift.errors import ApiError

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
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except Exception:
        log.exception("unhandled_error", method=request.method, path=request.path)
        return error_response(500, "internal_error", "internal error")

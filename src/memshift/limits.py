"""What a request may be, read the same way by the stores and the proxy.

A body is read within a size limit (a ``Content-Length`` over it is refused before a
byte is read; a body without one is cut off at the limit), with a pause limit between
its pieces (a client that stops sending half-way gets 408, not a connection held for
ever), and in an encoding aiohttp decodes (anything else is 415, a body that does not
decode 400). A JSON document may nest at most ``MAX_JSON_DEPTH`` deep: deeper ones are
refused 422 before any work, by the store (which could not encode them again) and by
the proxy (which must not send a store what it would refuse).

The stores and the proxy share these defaults, so a request the proxy lets through is
one a store with its defaults takes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from memshift.errors import ApiError

MAX_JSON_DEPTH = 64
# The deepest a setting may allow: the JSON encoder's own limit is 254.
DEEPEST = 200
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
# Content-Encodings aiohttp decodes on its own; the body memshift sees is decoded.
DECODED = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


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
    check_encoding(request)
    check_length(request, limit)
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            async with asyncio.timeout(pause_s):
                chunk = await request.content.readany()
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


def _openers(raw: bytes) -> int:
    return raw.count(b"{") + raw.count(b"[")


def nests_deeper(doc: Any, limit: int) -> bool:
    """Whether ``doc`` (decoded JSON) nests more than ``limit`` levels deep."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def depth_error(limit: int) -> ApiError:
    """The error of a document nested deeper than ``limit``."""
    return ApiError(422, "json_too_deep", f"the JSON nests deeper than {limit} levels")


def check_depth(doc: Any, raw: bytes, limit: int) -> None:
    """Refuse (422) ``doc``, decoded from ``raw``, when it nests deeper than ``limit``.

    A body with no more brackets than the limit cannot nest deeper: most bodies are
    passed on a count of bytes, without a walk.
    """
    if _openers(raw) > limit and nests_deeper(doc, limit):
        raise depth_error(limit)


def raw_too_deep(raw: bytes, limit: int) -> bool:
    """Whether the JSON text ``raw`` nests deeper than ``limit`` (not JSON: False).

    The proxy's check: bytes it passes on are decoded only when they hold more
    brackets than the limit, which a body of plain records seldom does.
    """
    if _openers(raw) <= limit:
        return False
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses past 1024 levels: that is too deep by any limit here.
        return "depth" in str(exc).lower()
    return nests_deeper(doc, limit)

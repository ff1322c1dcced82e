"""What a request may be, read the same way by the stores and the proxy.

A body is read within a size limit, a pause limit between its pieces and an encoding
aiohttp decodes (``webutil.read_body``); a connection's headers within a deadline
(``serving.py``). A JSON document may nest at most ``MAX_JSON_DEPTH`` deep: deeper
ones are refused 422 before any work, by the store (which could not encode them
again) and by the proxy (which must not send a store what it would refuse).

The stores and the proxy share these defaults, so a request the proxy lets through is
one a store with its defaults takes.
"""

from __future__ import annotations

from typing import Any

import orjson

from memshift.errors import ApiError

MAX_JSON_DEPTH = 64
# The deepest a setting may allow: the JSON encoder's own limit is 254.
DEEPEST = 200
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0


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

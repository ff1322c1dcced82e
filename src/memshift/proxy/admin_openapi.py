"""The admin API described as OpenAPI 3.1, served at ``/openapi.json`` on the admin port.

Each change takes a small JSON object (below); each answer is JSON but ``/metrics``
(Prometheus text) and ``/report.html``. A test checks that every route the admin app
serves, the console's pages aside, is described here and nothing else is.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from memshift.webutil import json_response

_REASON = {"type": "string", "maxLength": 2000}
_OBJECT = {"type": "object"}
# (method, path): (summary, request body schema or None, answer media type)
OPERATIONS: dict[tuple[str, str], tuple[str, dict[str, Any] | None, str]] = {
    ("get", "/healthz"): ("Whether the admin API is up (no token)", None, "application/json"),
    ("get", "/status"): ("Control state, health, backlog, thresholds", None, "application/json"),
    ("post", "/ramp"): (
        "Send this share of reads to the new store",
        {
            "type": "object",
            "properties": {
                "read_percent": {"type": "integer", "minimum": 0, "maximum": 100},
                "reason": _REASON,
            },
            "required": ["read_percent"],
            "additionalProperties": False,
        },
        "application/json",
    ),
    ("post", "/failback"): (
        "Fail back to legacy by hand, latched",
        {"type": "object", "properties": {"reason": {**_REASON, "minLength": 1}}},
        "application/json",
    ),
    ("post", "/rearm"): (
        "Lift the failback latch",
        {"type": "object", "properties": {"reason": _REASON}},
        "application/json",
    ),
    ("post", "/promote"): (
        "Make new the primary; refused (409 promote_unsafe, with reasons) unless safe or forced",
        {"type": "object", "properties": {"force": {"type": "boolean"}, "reason": _REASON}},
        "application/json",
    ),
    ("get", "/audit"): ("The audit log, newest first", None, "application/json"),
    ("get", "/report"): ("The consistency report", None, "application/json"),
    ("post", "/report/reset"): (
        "Open a new report window (audited)",
        {"type": "object", "properties": {"reason": _REASON}},
        "application/json",
    ),
    ("get", "/report.html"): ("The consistency report as a page", None, "text/html"),
    ("get", "/metrics"): ("Prometheus metrics", None, "text/plain"),
    ("post", "/migrate"): (
        "Run verify or backfill in the proxy",
        {
            "type": "object",
            "properties": {
                "job": {"enum": ["verify", "backfill"]},
                "repair": {"type": "boolean"},
            },
            "required": ["job"],
        },
        "application/json",
    ),
    ("get", "/migrate"): ("The migration job running, or the last one", None, "application/json"),
    ("get", "/openapi.json"): ("This description (no token)", None, "application/json"),
}
PUBLIC = frozenset({"/healthz", "/openapi.json"})


def _operation(method: str, path: str) -> dict[str, Any]:
    summary, body, media = OPERATIONS[(method, path)]
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    op: dict[str, Any] = {
        "operationId": f"{method} {path}",
        "summary": summary,
        "responses": {
            "202" if path == "/migrate" and method == "post" else "200": {
                "description": "Done",
                "content": {media: {"schema": _OBJECT if media == "application/json" else {}}},
            },
            "4XX": {"description": "Refused; the code and message say why", "content": error},
        },
    }
    if body is not None:
        op["requestBody"] = {"content": {"application/json": {"schema": body}}}
    if path in PUBLIC:
        op["security"] = []
    return op


def document() -> dict[str, Any]:
    """The OpenAPI document of the admin API."""
    paths: dict[str, Any] = {}
    for method, path in OPERATIONS:
        paths.setdefault(path, {})[method] = _operation(method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "memshift admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "object", "required": ["code", "message"]}},
                    "required": ["error"],
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def serve(_request: web.Request) -> web.Response:
    return json_response(document())

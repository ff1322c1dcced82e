"""The reference store's REST API described as OpenAPI 3.1, served at ``/openapi.json``.

The description is made from what serves the API, not written beside it: the paths
and methods from the route table (``routes.ROUTES``), request bodies from the fields
each route validates (``validation.Field``), query parameters from the route's own
declarations. The answers' shapes are declared here, once; the fuzz suite checks every
answer against them, and a test checks every served route is described.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from memshift.store.routes import ROUTES, Route
from memshift.store.validation import MAX_ID, Field
from memshift.webutil import json_response

_ID = {"type": "integer", "minimum": 1}
_TIME = {"type": "string", "format": "date-time"}
_PROVENANCE = {"owner": {"type": "string"}, "version": {"type": "integer"}}
_PROVENANCE |= {"created_at": _TIME, "updated_at": _TIME}
_ACCESS = {"type": "string", "enum": ["private", "public"]}
_CURSOR = {"type": ["string", "null"]}


def _record(properties: dict[str, Any], *optional: str) -> dict[str, Any]:
    every = {**properties, **_PROVENANCE}
    return {
        "type": "object",
        "properties": every,
        "required": [name for name in every if name not in optional],
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref(item)}, "next_cursor": _CURSOR},
        "required": ["items", "next_cursor"],
    }


_MEMORY = {
    "id": _ID,
    "title": {"type": "string"},
    "content": {"type": "string"},
    "context_id": {"type": ["integer", "null"]},
    "access_level": _ACCESS,
    "metadata": {"type": "object"},
}
SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                "required": ["code", "message"],
            }
        },
        "required": ["error"],
    },
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
    "Memory": _record(_MEMORY),
    "MemoryListed": _record({k: v for k, v in _MEMORY.items() if k != "content"}),
    "Context": _record(
        {
            "id": _ID,
            "name": {"type": "string"},
            "description": {"type": ["string", "null"]},
            "access_level": _ACCESS,
        }
    ),
    "Relation": _record(
        {
            "id": _ID,
            "name": {"type": "string"},
            "source_id": _ID,
            "target_id": _ID,
            "strength": {"type": ["number", "null"]},
        }
    ),
    "MemoryPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("MemoryListed")},
            "next_cursor": _CURSOR,
        },
        "required": ["items", "next_cursor"],
    },
    "ContextPage": {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": _ref("Context")},
            "next_cursor": _CURSOR,
        },
        "required": ["items", "next_cursor"],
    },
    "RelationList": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("Relation")}},
        "required": ["items"],
    },
    "SearchResults": {
        "type": "object",
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": _ID,
                        "title": {"type": "string"},
                        "snippet": {"type": "string"},
                        "score": {"type": "number"},
                    },
                    "required": ["id", "title", "snippet", "score"],
                },
            },
            "total": {"type": "integer", "minimum": 0},
        },
        "required": ["results", "total"],
    },
    "Stats": {
        "type": "object",
        "properties": {
            name: {"type": "integer", "minimum": 0}
            for name in ("memories", "contexts", "relations", "logical_bytes", "stored_bytes")
        },
    },
    "ExportLine": {
        "description": "One NDJSON line: a record with its digest (content=false: its id,"
        " the ids it refers to, version and digest; digest=false: without the digest); the"
        " last line is {end, count}",
        "type": "object",
        "properties": {"id": _ID, "digest": {"type": "string"}, "end": {"const": True}},
    },
    "ExportLines": {
        "type": "object",
        "properties": {"items": {"type": "array", "items": _ref("ExportLine")}},
        "required": ["items"],
    },
    "Imported": {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "id": _ID,
                        "replayed": {"type": "boolean"},
                    },
                    "required": ["key", "id", "replayed"],
                },
            }
        },
        "required": ["items"],
    },
    "Whoami": {
        "type": "object",
        "properties": {"user": {"type": "string"}, "role": {"enum": ["user", "admin"]}},
        "required": ["user", "role"],
    },
}
# What each route may answer besides its success, and why.
_REFUSALS = {
    "400": "A malformed request: JSON, id, query parameter or encoding",
    "401": "No valid bearer token",
    "403": "Not the caller's to do",
    "404": "No such record the caller may see",
    "408": "The body stopped arriving",
    "409": "In conflict with a stored record, or an idempotency key reused",
    "413": "The body is too large",
    "415": "Not JSON in UTF-8, or an encoding that cannot be read",
    "422": "A field is wrong (named in the message), or the JSON nests too deep",
    "503": "The database is busy or unreachable",
}


def _body_schema(fields: tuple[Field, ...], update: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in fields:
        schema = dict(field.kind.schema)
        if field.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        properties[field.name] = schema
    required = [f.name for f in fields if f.required]
    doc: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        doc["required"] = required
    if update:
        doc["minProperties"] = 1
    return doc


def _operation(route: Route) -> dict[str, Any]:
    error = {"application/json": {"schema": _ref("Error")}}
    success: dict[str, Any] = {"description": "Done"}
    if route.answer is not None:
        success["content"] = {route.media: {"schema": _ref(route.answer)}}
    responses: dict[str, Any] = {str(route.status): success}
    for status, why in _REFUSALS.items():
        if route.public and status != "503":
            continue
        responses[status] = {"description": why, "content": error}
    op: dict[str, Any] = {
        "operationId": f"{route.method.lower()} {route.path}",
        "summary": route.summary,
        "responses": responses,
    }
    parameters = [
        {"name": p.name, "in": "query", "required": p.required, "schema": p.schema}
        for p in route.query
    ]
    if "{id}" in route.path:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": f"a record id, 1 to {MAX_ID} (leading zeros allowed)",
                "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
            }
        )
    if "{kind}" in route.path:
        parameters.append(
            {
                "name": "kind",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": ["context", "memory", "relation"]},
            }
        )
    if parameters:
        op["parameters"] = parameters
    if route.schema is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": route.schema}},
        }
    elif route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _body_schema(route.body, route.update)}},
        }
    if route.public:
        op["security"] = []
    return op


def document() -> dict[str, Any]:
    """The OpenAPI document of the store's REST API."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    paths["/openapi.json"] = {
        "get": {
            "operationId": "get /openapi.json",
            "summary": "This description",
            "security": [],
            "responses": {"200": {"description": "The OpenAPI document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "memshift reference memory store", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def serve(_request: web.Request) -> web.Response:
    return json_response(document())


def setup(app: web.Application) -> None:
    """Serve the description at ``/openapi.json`` (no token needed)."""
    app.router.add_get("/openapi.json", serve)

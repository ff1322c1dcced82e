"""The store's REST routes: parse and check the request, then run one operation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from aiohttp import web

from memshift.store import bulk, contexts, memories, relations
from memshift.store.api import PRINCIPAL, read, read_json, require_query, write
from memshift.store.validation import (
    CONTEXT_CREATE,
    CONTEXT_UPDATE,
    MAX_ID,
    MEMORY_CREATE,
    MEMORY_UPDATE,
    RELATION_CREATE,
    Field,
    decode_cursor,
    parse_body,
    parse_id,
    query_int,
    query_opt_int,
)
from memshift.webutil import json_response

PAGE_DEFAULT, PAGE_MAX = 50, 1000
SEARCH_DEFAULT, SEARCH_MAX = 10, 100


async def _body(
    request: web.Request, fields: tuple[Field, ...], *, update: bool = False
) -> dict[str, Any]:
    return parse_body(
        await read_json(request), fields, admin=request[PRINCIPAL].provenance, update=update
    )


def _id(request: web.Request) -> int:
    return parse_id(request.match_info["id"])


def _page(request: web.Request) -> tuple[int, int]:
    limit = query_int(request.query, "limit", default=PAGE_DEFAULT, low=1, high=PAGE_MAX)
    return decode_cursor(request.query.get("cursor")), limit


def _context_filter(request: web.Request) -> int | None:
    return query_opt_int(request.query, "context_id", low=1, high=MAX_ID)


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def whoami(request: web.Request) -> web.Response:
    who = request[PRINCIPAL]
    return json_response({"user": who.user, "role": "admin" if who.admin else "user"})


async def create_context(request: web.Request) -> web.Response:
    data = await _body(request, CONTEXT_CREATE)
    return await write(request, partial(contexts.create_context, data=data), 201)


async def list_contexts(request: web.Request) -> web.Response:
    after, limit = _page(request)
    return await read(request, partial(contexts.list_contexts, after=after, limit=limit))


async def get_context(request: web.Request) -> web.Response:
    return await read(request, partial(contexts.get_context, context_id=_id(request)))


async def update_context(request: web.Request) -> web.Response:
    context_id = _id(request)
    data = await _body(request, CONTEXT_UPDATE, update=True)
    return await write(request, partial(contexts.update_context, context_id=context_id, data=data))


async def delete_context(request: web.Request) -> web.Response:
    return await write(request, partial(contexts.delete_context, context_id=_id(request)), 204)


async def create_memory(request: web.Request) -> web.Response:
    data = await _body(request, MEMORY_CREATE)
    return await write(request, partial(memories.create_memory, data=data), 201)


async def list_memories(request: web.Request) -> web.Response:
    after, limit = _page(request)
    op = partial(
        memories.list_memories, context_id=_context_filter(request), after=after, limit=limit
    )
    return await read(request, op)


async def get_memory(request: web.Request) -> web.Response:
    return await read(request, partial(memories.get_memory, memory_id=_id(request)))


async def update_memory(request: web.Request) -> web.Response:
    memory_id = _id(request)
    data = await _body(request, MEMORY_UPDATE, update=True)
    return await write(request, partial(memories.update_memory, memory_id=memory_id, data=data))


async def delete_memory(request: web.Request) -> web.Response:
    return await write(request, partial(memories.delete_memory, memory_id=_id(request)), 204)


async def memory_relations(request: web.Request) -> web.Response:
    return await read(request, partial(relations.memory_relations, memory_id=_id(request)))


async def search(request: web.Request) -> web.Response:
    query = require_query(request, "q", 1000)
    limit = query_int(request.query, "limit", default=SEARCH_DEFAULT, low=1, high=SEARCH_MAX)
    op = partial(
        memories.search_memories, query=query, context_id=_context_filter(request), limit=limit
    )
    return await read(request, op)


async def create_relation(request: web.Request) -> web.Response:
    data = await _body(request, RELATION_CREATE)
    return await write(request, partial(relations.create_relation, data=data), 201)


async def get_relation(request: web.Request) -> web.Response:
    return await read(request, partial(relations.get_relation, relation_id=_id(request)))


async def delete_relation(request: web.Request) -> web.Response:
    return await write(request, partial(relations.delete_relation, relation_id=_id(request)), 204)


async def stats(request: web.Request) -> web.Response:
    return await read(request, relations.stats)


@dataclass(frozen=True)
class Param:
    """A query parameter a route takes, as a JSON schema."""

    name: str
    schema: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Route:
    """One REST route: served by ``handler``, described by the rest (``openapi.py``).

    ``answer``: the schema of a success's body (None: no body); ``body``: the fields a
    request body takes (None: it takes none).
    """

    method: str
    path: str
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    summary: str
    answer: str | None
    status: int = 200
    body: tuple[Field, ...] | None = None
    update: bool = False
    query: tuple[Param, ...] = ()
    public: bool = False  # served without a token
    media: str = "application/json"  # of a success's body
    schema: dict[str, Any] | None = None  # a request body not made of record fields


_ID_QUERY = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
PAGE = (
    Param("cursor", {"type": "string", "maxLength": 200}),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT}),
)
IN_CONTEXT = Param("context_id", _ID_QUERY)
EXPORT = (
    Param("after", {"type": "integer", "minimum": 0, "maximum": MAX_ID, "default": 0}),
    Param(
        "limit",
        {
            "type": "integer",
            "minimum": 1,
            "maximum": bulk.EXPORT_MAX,
            "default": bulk.EXPORT_DEFAULT,
        },
    ),
    Param("content", {"type": "boolean", "default": True}),
    Param("digest", {"type": "boolean", "default": True}),
)
SEARCH = (
    Param("q", {"type": "string", "minLength": 1, "maxLength": 1000}, required=True),
    Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": SEARCH_MAX, "default": SEARCH_DEFAULT},
    ),
    IN_CONTEXT,
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "Whether the store is up", "Health", public=True),
    Route(
        "POST", "/v1/contexts", create_context, "Create a context", "Context", 201, CONTEXT_CREATE
    ),
    Route("GET", "/v1/contexts", list_contexts, "List contexts", "ContextPage", query=PAGE),
    Route("GET", "/v1/contexts/{id}", get_context, "Get a context", "Context"),
    Route(
        "PATCH",
        "/v1/contexts/{id}",
        update_context,
        "Change a context",
        "Context",
        body=CONTEXT_UPDATE,
        update=True,
    ),
    Route("DELETE", "/v1/contexts/{id}", delete_context, "Delete a context", None, 204),
    Route("POST", "/v1/memories", create_memory, "Create a memory", "Memory", 201, MEMORY_CREATE),
    Route(
        "GET",
        "/v1/memories",
        list_memories,
        "List memories (without content)",
        "MemoryPage",
        query=(*PAGE, IN_CONTEXT),
    ),
    Route("GET", "/v1/memories/{id}", get_memory, "Get a memory", "Memory"),
    Route(
        "PATCH",
        "/v1/memories/{id}",
        update_memory,
        "Change a memory",
        "Memory",
        body=MEMORY_UPDATE,
        update=True,
    ),
    Route("DELETE", "/v1/memories/{id}", delete_memory, "Delete a memory", None, 204),
    Route(
        "GET",
        "/v1/memories/{id}/relations",
        memory_relations,
        "A memory's relations",
        "RelationList",
    ),
    Route("GET", "/v1/search", search, "Search memories, ranked", "SearchResults", query=SEARCH),
    Route(
        "POST",
        "/v1/relations",
        create_relation,
        "Relate two memories",
        "Relation",
        201,
        RELATION_CREATE,
    ),
    Route("GET", "/v1/relations/{id}", get_relation, "Get a relation", "Relation"),
    Route("DELETE", "/v1/relations/{id}", delete_relation, "Delete a relation", None, 204),
    Route("GET", "/v1/stats", stats, "Counts and sizes of what the caller may see", "Stats"),
    Route("GET", "/v1/whoami", whoami, "Who the token is", "Whoami"),
    Route(
        "GET",
        "/v1/bulk/export/{kind}",
        bulk.export,
        "Every record of a kind in id order, as NDJSON with digests (admin)",
        "ExportLine",
        query=EXPORT,
        media=bulk.NDJSON,
    ),
    Route(
        "POST",
        "/v1/bulk/lookup/{kind}",
        bulk.lookup,
        "The export lines of listed records (admin)",
        "ExportLines",
        schema={
            "type": "object",
            "properties": {
                "ids": {"type": "array", "items": _ID_QUERY, "maxItems": bulk.BATCH_MAX},
                "content": {"type": "boolean"},
                "digest": {"type": "boolean"},
            },
            "required": ["ids"],
            "additionalProperties": False,
        },
    ),
    Route(
        "POST",
        "/v1/bulk/import/{kind}",
        bulk.import_,
        "Create a batch of records with provenance, in one transaction, once per key (admin)",
        "Imported",
        schema={
            "type": "object",
            "properties": {
                "records": {
                    "type": "array",
                    "maxItems": bulk.BATCH_MAX,
                    "items": {
                        "type": "object",
                        "properties": {
                            "key": {"type": "string", "minLength": 1, "maxLength": 255},
                            "record": {"type": "object"},
                        },
                        "required": ["key", "record"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["records"],
            "additionalProperties": False,
        },
    ),
)


def setup(app: web.Application) -> None:
    """Add the REST routes to ``app``."""
    app.router.add_routes([web.route(r.method, r.path, r.handler) for r in ROUTES])

"""The store's REST routes: parse and check the request, then run one operation."""

from __future__ import annotations

from functools import partial
from typing import Any

from aiohttp import web

from memshift.store import contexts, memories, relations
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


def setup(app: web.Application) -> None:
    """Add the REST routes to ``app``."""
    app.router.add_routes(
        [
            web.get("/healthz", healthz),
            web.post("/v1/contexts", create_context),
            web.get("/v1/contexts", list_contexts),
            web.get("/v1/contexts/{id}", get_context),
            web.patch("/v1/contexts/{id}", update_context),
            web.delete("/v1/contexts/{id}", delete_context),
            web.post("/v1/memories", create_memory),
            web.get("/v1/memories", list_memories),
            web.get("/v1/memories/{id}", get_memory),
            web.patch("/v1/memories/{id}", update_memory),
            web.delete("/v1/memories/{id}", delete_memory),
            web.get("/v1/memories/{id}/relations", memory_relations),
            web.get("/v1/search", search),
            web.post("/v1/relations", create_relation),
            web.get("/v1/relations/{id}", get_relation),
            web.delete("/v1/relations/{id}", delete_relation),
            web.get("/v1/stats", stats),
            web.get("/v1/whoami", whoami),
        ]
    )

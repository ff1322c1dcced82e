"""The store's MCP tools, served over Streamable HTTP by the official ``mcp`` SDK.

The tools run the same operations as the REST routes, with the same validation,
the same caller (the bearer token's user, resolved by the store's auth middleware)
and the same ``Idempotency-Key`` handling. A result's ``structuredContent`` is the
REST answer's JSON, with a text copy; a refusal is an ``isError`` result whose
structured content is the REST error document (``{"error": {"code", "message"}}``).

Both protocol eras are served: 2025 sessions (``initialize``, ``Mcp-Session-Id``) and
2026-07-28 single requests; the SDK tells them apart by ``MCP-Protocol-Version``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import mcp_types as types
import orjson
import structlog
from aiohttp import web
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from memshift.errors import ApiError, unprocessable
from memshift.limits import check_depth
from memshift.store import contexts, idempotency, memories, relations
from memshift.store.api import PRINCIPAL, STATE, Operation, StoreState, body_of, run_write
from memshift.store.asgi import serve_asgi
from memshift.store.call import Call
from memshift.store.routes import PAGE_DEFAULT, PAGE_MAX, SEARCH_DEFAULT, SEARCH_MAX
from memshift.store.tokens import Principal
from memshift.store.validation import (
    CONTEXT_CREATE,
    MAX_ID,
    MEMORY_CREATE,
    MEMORY_UPDATE,
    RELATION_CREATE,
    Field,
    decode_cursor,
    parse_body,
)

log = structlog.get_logger("memshift.store")

PRINCIPAL_SCOPE_KEY = "memshift.principal"
MCP_PATH = "/mcp"

_ID = {"type": "integer", "minimum": 1}
_ADMIN_ONLY = {
    "owner": {"type": "string", "description": "admin only: the record's owner"},
    "version": {"type": "integer", "description": "admin only: the record's version"},
    "created_at": {"type": "string", "description": "admin only: RFC 3339 creation time"},
    "updated_at": {"type": "string", "description": "admin only: RFC 3339 update time"},
}
_MEMORY_FIELDS = {
    "title": {"type": "string"},
    "content": {"type": "string"},
    "context_id": {**_ID, "description": "the context the memory belongs to"},
    "access_level": {"type": "string", "enum": ["private", "public"]},
    "metadata": {"type": "object"},
}


def _schema(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


@dataclass(frozen=True)
class Tool:
    """One MCP tool: its schema, and how its arguments become a store operation."""

    name: str
    description: str
    schema: dict[str, Any]
    build: Callable[[dict[str, Any], Principal], Operation]
    status: int | None = None  # the REST status of a write; None for a read

    @property
    def writes(self) -> bool:
        return self.status is not None


def _int(args: dict[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = args.get(name, default)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise unprocessable(f"{name}: must be an integer from {low} to {high}")
    return value


def _required_id(args: dict[str, Any], name: str) -> int:
    value = _int(args, name, None, 1, MAX_ID)
    if value is None:
        raise unprocessable(f"{name}: required")
    return value


def _only(args: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in args:
        if name not in names:
            raise unprocessable(f"{name}: unknown argument")


def _fields(
    args: dict[str, Any], fields: tuple[Field, ...], who: Principal, update: bool = False
) -> dict[str, Any]:
    return parse_body(args, fields, admin=who.provenance, update=update)


def _create_memory(args: dict[str, Any], who: Principal) -> Operation:
    return partial(memories.create_memory, data=_fields(args, MEMORY_CREATE, who))


def _update_memory(args: dict[str, Any], who: Principal) -> Operation:
    rest = {k: v for k, v in args.items() if k != "memory_id"}
    memory_id = _required_id(args, "memory_id")
    data = _fields(rest, MEMORY_UPDATE, who, update=True)
    return partial(memories.update_memory, memory_id=memory_id, data=data)


def _delete_memory(args: dict[str, Any], who: Principal) -> Operation:
    _only(args, ("memory_id",))
    memory_id = _required_id(args, "memory_id")

    def op(conn: Any, call: Call) -> dict[str, Any]:
        memories.delete_memory(conn, call, memory_id=memory_id)
        return {"id": memory_id, "deleted": True}

    return op


def _get_memory(args: dict[str, Any], who: Principal) -> Operation:
    _only(args, ("memory_id",))
    return partial(memories.get_memory, memory_id=_required_id(args, "memory_id"))


def _search(args: dict[str, Any], who: Principal) -> Operation:
    _only(args, ("query", "context_id", "limit"))
    query = args.get("query")
    if not isinstance(query, str) or not 1 <= len(query.strip()) <= 1000:
        raise unprocessable("query: required (1..1000 characters)")
    return partial(
        memories.search_memories,
        query=query.strip(),
        context_id=_int(args, "context_id", None, 1, MAX_ID),
        limit=_int(args, "limit", SEARCH_DEFAULT, 1, SEARCH_MAX) or SEARCH_DEFAULT,
    )


def _list_memories(args: dict[str, Any], who: Principal) -> Operation:
    _only(args, ("context_id", "limit", "cursor"))
    cursor = args.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise unprocessable("cursor: must be a string from an earlier answer")
    return partial(
        memories.list_memories,
        context_id=_int(args, "context_id", None, 1, MAX_ID),
        after=decode_cursor(cursor),
        limit=_int(args, "limit", PAGE_DEFAULT, 1, PAGE_MAX) or PAGE_DEFAULT,
    )


def _create_context(args: dict[str, Any], who: Principal) -> Operation:
    return partial(contexts.create_context, data=_fields(args, CONTEXT_CREATE, who))


def _create_relation(args: dict[str, Any], who: Principal) -> Operation:
    renamed = dict(args)
    for tool_name, rest_name in (
        ("source_memory_id", "source_id"),
        ("target_memory_id", "target_id"),
    ):
        if tool_name in renamed:
            renamed[rest_name] = renamed.pop(tool_name)
        elif rest_name in renamed:
            raise unprocessable(f"{rest_name}: unknown argument (use {tool_name})")
    return partial(relations.create_relation, data=_fields(renamed, RELATION_CREATE, who))


def _memory_relations(args: dict[str, Any], who: Principal) -> Operation:
    _only(args, ("memory_id",))
    return partial(relations.memory_relations, memory_id=_required_id(args, "memory_id"))


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "create_memory",
            "Store a new memory (title and content), optionally in a context.",
            _schema(["title", "content"], **_MEMORY_FIELDS, **_ADMIN_ONLY),
            _create_memory,
            201,
        ),
        Tool(
            "get_memory",
            "Return one memory by id.",
            _schema(["memory_id"], memory_id=_ID),
            _get_memory,
        ),
        Tool(
            "update_memory",
            "Change fields of a memory; the version goes up by one.",
            _schema(["memory_id"], memory_id=_ID, **_MEMORY_FIELDS, **_ADMIN_ONLY),
            _update_memory,
            200,
        ),
        Tool(
            "delete_memory",
            "Delete a memory and its relations.",
            _schema(["memory_id"], memory_id=_ID),
            _delete_memory,
            200,
        ),
        Tool(
            "search_memories",
            "Full-text search over the memories the caller may read.",
            _schema(
                ["query"],
                query={"type": "string"},
                context_id=_ID,
                limit={"type": "integer", "minimum": 1, "maximum": SEARCH_MAX},
            ),
            _search,
        ),
        Tool(
            "list_memories",
            "List memories in id order, a page at a time (pass next_cursor back as cursor).",
            _schema(
                [],
                context_id=_ID,
                limit={"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
                cursor={"type": "string"},
            ),
            _list_memories,
        ),
        Tool(
            "create_context",
            "Create a context (a named group of memories).",
            _schema(
                ["name"],
                name={"type": "string"},
                description={"type": "string"},
                access_level={"type": "string", "enum": ["private", "public"]},
                **_ADMIN_ONLY,
            ),
            _create_context,
            201,
        ),
        Tool(
            "create_relation",
            "Relate two memories with a named, weighted link.",
            _schema(
                ["name", "source_memory_id", "target_memory_id"],
                name={"type": "string"},
                source_memory_id=_ID,
                target_memory_id=_ID,
                strength={"type": "number", "minimum": 0, "maximum": 1},
                **_ADMIN_ONLY,
            ),
            _create_relation,
            201,
        ),
        Tool(
            "get_memory_relations",
            "Return the relations a memory takes part in.",
            _schema(["memory_id"], memory_id=_ID),
            _memory_relations,
        ),
    )
}


def _result(doc: Any, error: bool = False) -> types.CallToolResult:
    text = orjson.dumps(doc).decode()
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=doc,
        is_error=error,
    )


def _error(status: int, code: str, message: str) -> types.CallToolResult:
    return _result({"error": {"code": code, "message": message, "status": status}}, error=True)


class StoreTools:
    """Runs tool calls against one store's state."""

    def __init__(self, state: StoreState) -> None:
        self.state = state

    async def list_tools(
        self, _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.schema)
                for t in TOOLS.values()
            ]
        )

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        tool = TOOLS.get(params.name)
        if tool is None:
            return _error(404, "unknown_tool", f"no tool named {params.name!r}")
        request = ctx.request
        scope = getattr(request, "scope", None) or {}
        who = scope.get(PRINCIPAL_SCOPE_KEY)
        if not isinstance(who, Principal):  # the auth middleware always sets it
            return _error(401, "unauthorized", "a valid bearer token is required")
        args = dict(params.arguments or {})
        try:
            return await self._run(tool, args, who, getattr(request, "headers", {}))
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        except SAIntegrityError:
            log.warning("integrity_conflict", tool=tool.name, exc_info=True)
            return _error(409, "conflict", "the change conflicts with stored records")
        except OperationalError:
            log.exception("database_unavailable", tool=tool.name)
            return _error(503, "unavailable", "the database is busy or unreachable")

    async def _run(
        self, tool: Tool, args: dict[str, Any], who: Principal, headers: Any
    ) -> types.CallToolResult:
        op = tool.build(args, who)
        call = Call(who=who, content=self.state.content)
        if not tool.writes:
            doc = await self.state.db.read(lambda conn: op(conn, call))
            return _result(doc)
        key = headers.get("idempotency-key")
        fp = ""
        if key is not None:
            idempotency.check_key(key)
            fp = idempotency.fingerprint(
                "TOOL", tool.name, orjson.dumps(args, option=orjson.OPT_SORT_KEYS)
            )
        assert tool.status is not None
        answer, _replayed = await run_write(self.state, call, op, tool.status, key, fp)
        return _result(orjson.loads(answer.body))


@dataclass
class McpEndpoint:
    """The SDK's session manager for one store app, and its lifecycle."""

    manager: StreamableHTTPSessionManager

    async def handle(self, request: web.Request) -> web.StreamResponse:
        who = request[PRINCIPAL]
        extra = {PRINCIPAL_SCOPE_KEY: who}
        if request.method != "POST":
            return await serve_asgi(self.manager.handle_request, request, extra)
        body = await body_of(request)
        with contextlib.suppress(orjson.JSONDecodeError):  # the SDK answers it -32700
            check_depth(orjson.loads(body), body, request.app[STATE].settings.max_json_depth)
        return await serve_asgi(self.manager.handle_request, request, extra, body)

    async def lifecycle(self, _app: web.Application) -> AsyncIterator[None]:
        """Run the session manager for the app's life, in a task of its own.

        Its task group must be left by the task that entered it; aiohttp starts and
        cleans up an app from different tasks.
        """
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            async with self.manager.run():
                started.set()
                await stop.wait()

        # Both tasks are owned here: the waiter ends now, the runner at cleanup.
        task = asyncio.create_task(run(), name="mcp-sessions")  # noqa: TID251
        waiter = asyncio.create_task(started.wait())  # noqa: TID251
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raise why it could not start
        yield
        stop.set()
        await task


def setup(app: web.Application, allowed_hosts: tuple[str, ...]) -> None:
    """Serve the MCP tools at ``/mcp`` on ``app`` (GET, POST and DELETE)."""
    tools = StoreTools(app[STATE])
    server: Server[Any] = Server(
        f"memshift-store-{app[STATE].settings.engine}",
        version="1",
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
        get_tool_input_schema=lambda name: TOOLS[name].schema if name in TOOLS else None,
    )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(allowed_hosts),
        allowed_origins=[f"http://{h}" for h in allowed_hosts]
        + [f"https://{h}" for h in allowed_hosts],
    )
    manager = StreamableHTTPSessionManager(
        app=server,
        security_settings=security,
        max_request_body_size=app[STATE].settings.body_limit(acting=True),
        session_idle_timeout=app[STATE].settings.mcp_session_idle_s,
    )
    endpoint = McpEndpoint(manager)
    app.cleanup_ctx.append(endpoint.lifecycle)
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, MCP_PATH, endpoint.handle)

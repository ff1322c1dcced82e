"""The route and tool tables of the reference store: where its ids sit.

They are data in the same form as a config file's ``[[routes]]`` and ``[mcp.tools.*]``,
parsed by the same code; a config file that names its own replaces the table whole.
"""

from __future__ import annotations

from typing import Any

_MEMORY_IDS = {"$.id": "memory", "$.context_id": "context"}
_RELATION_IDS = {"$.id": "relation", "$.source_id": "memory", "$.target_id": "memory"}
_RELATION_ITEMS = {
    "$.items[*].id": "relation",
    "$.items[*].source_id": "memory",
    "$.items[*].target_id": "memory",
}
# An admin may set these on create: a mirrored create copies them from the primary.
_PROVENANCE = ["owner", "version", "created_at", "updated_at"]

DEFAULT_ROUTES: list[dict[str, Any]] = [
    {
        "name": "contexts.create",
        "methods": ["POST"],
        "path": "/v1/contexts",
        "creates": "context",
        "response_ids": {"$.id": "context"},
        "copy_from_answer": _PROVENANCE,
    },
    {
        "name": "contexts.list",
        "methods": ["GET", "HEAD"],
        "path": "/v1/contexts",
        "response_ids": {"$.items[*].id": "context"},
    },
    {
        "name": "contexts.item",
        "methods": ["GET", "HEAD", "PATCH", "DELETE"],
        "path": "/v1/contexts/{context}",
        "response_ids": {"$.id": "context"},
    },
    {
        "name": "memories.create",
        "methods": ["POST"],
        "path": "/v1/memories",
        "creates": "memory",
        "request_ids": {"$.context_id": "context"},
        "response_ids": _MEMORY_IDS,
        "copy_from_answer": _PROVENANCE,
    },
    {
        "name": "memories.list",
        "methods": ["GET", "HEAD"],
        "path": "/v1/memories",
        "query_ids": {"context_id": "context"},
        "response_ids": {"$.items[*].id": "memory", "$.items[*].context_id": "context"},
    },
    {
        "name": "memories.item",
        "methods": ["GET", "HEAD", "PATCH", "DELETE"],
        "path": "/v1/memories/{memory}",
        "request_ids": {"$.context_id": "context"},
        "response_ids": _MEMORY_IDS,
    },
    {
        "name": "memories.relations",
        "methods": ["GET", "HEAD"],
        "path": "/v1/memories/{memory}/relations",
        "response_ids": _RELATION_ITEMS,
    },
    {
        "name": "relations.create",
        "methods": ["POST"],
        "path": "/v1/relations",
        "creates": "relation",
        "request_ids": {"$.source_id": "memory", "$.target_id": "memory"},
        "response_ids": _RELATION_IDS,
        "copy_from_answer": _PROVENANCE,
    },
    {
        "name": "relations.item",
        "methods": ["GET", "HEAD", "DELETE"],
        "path": "/v1/relations/{relation}",
        "response_ids": _RELATION_IDS,
    },
    {
        "name": "search",
        "methods": ["GET", "HEAD"],
        "path": "/v1/search",
        "query_ids": {"context_id": "context"},
        "response_ids": {"$.results[*].id": "memory"},
    },
    {"name": "stats", "methods": ["GET", "HEAD"], "path": "/v1/stats"},
    {"name": "healthz", "methods": ["GET", "HEAD"], "path": "/healthz"},
    {"name": "whoami", "methods": ["GET", "HEAD"], "path": "/v1/whoami"},
]

# MCP tools: ids among the arguments, in the result document, and which argument
# names the record a tool changes (or reads).
DEFAULT_TOOLS: dict[str, dict[str, Any]] = {
    "create_memory": {
        "creates": "memory",
        "id_arguments": {"context_id": "context"},
        "result_ids": _MEMORY_IDS,
        "copy_from_answer": _PROVENANCE,
    },
    "get_memory": {
        "record_argument": "memory_id",
        "id_arguments": {"memory_id": "memory"},
        "result_ids": _MEMORY_IDS,
    },
    "update_memory": {
        "record_argument": "memory_id",
        "id_arguments": {"memory_id": "memory", "context_id": "context"},
        "result_ids": _MEMORY_IDS,
    },
    "delete_memory": {
        "record_argument": "memory_id",
        "id_arguments": {"memory_id": "memory"},
        "result_ids": {"$.id": "memory"},
    },
    "search_memories": {
        "id_arguments": {"context_id": "context"},
        "result_ids": {"$.results[*].id": "memory"},
    },
    "list_memories": {
        "id_arguments": {"context_id": "context"},
        "result_ids": {"$.items[*].id": "memory", "$.items[*].context_id": "context"},
    },
    "create_context": {
        "creates": "context",
        "result_ids": {"$.id": "context"},
        "copy_from_answer": _PROVENANCE,
    },
    "create_relation": {
        "creates": "relation",
        "id_arguments": {"source_memory_id": "memory", "target_memory_id": "memory"},
        "result_ids": _RELATION_IDS,
        "copy_from_answer": _PROVENANCE,
    },
    "get_memory_relations": {
        "record_argument": "memory_id",
        "id_arguments": {"memory_id": "memory"},
        "result_ids": _RELATION_ITEMS,
    },
}

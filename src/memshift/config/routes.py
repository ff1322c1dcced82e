"""The route table of the reference store: where its ids sit in paths, bodies and answers.

It is data in the same form as a config file's ``[[routes]]``, parsed by the same code;
a config file that names its own ``[[routes]]`` replaces it whole.
"""

from __future__ import annotations

from typing import Any

_MEMORY_IDS = {"$.id": "memory", "$.context_id": "context"}
_RELATION_IDS = {"$.id": "relation", "$.source_id": "memory", "$.target_id": "memory"}
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
        "response_ids": {
            "$.items[*].id": "relation",
            "$.items[*].source_id": "memory",
            "$.items[*].target_id": "memory",
        },
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

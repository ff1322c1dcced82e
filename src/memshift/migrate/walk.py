"""A store read and written through its API with its service (admin) token.

Lists are walked page by page in id order, from an opaque cursor, so that a walk can
stop and resume and never holds more than a page of a store in memory; up to
``IN_FLIGHT`` requests run at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson

from memshift.config.settings import StoreEndpoint
from memshift.errors import UpstreamError
from memshift.ids import Id
from memshift.jsonpath import document_of
from memshift.links.stores import StoreLink
from memshift.links.wire import OutboundRequest

KINDS = ("context", "memory", "relation")
CREATE_PATHS = {"context": "/v1/contexts", "memory": "/v1/memories", "relation": "/v1/relations"}
ITEM_PATHS = {kind: f"{path}/" for kind, path in CREATE_PATHS.items()}
PAGE = 500
IN_FLIGHT = 16
ID_CACHE = 20_000  # id pairs a migration job caches per direction: its memory stays flat


def _no_spawn(job: Any, _label: str) -> None:
    raise NotImplementedError("a stdio store is reached through its profile's tools")


class StoreClient:
    """One store, as memshift's own migration work reaches it."""

    def __init__(self, endpoint: StoreEndpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self.http = StoreLink(endpoint, lambda: "/mcp", _no_spawn)
        self.limit = asyncio.Semaphore(IN_FLIGHT)

    async def call(
        self, method: str, path: str, doc: Any = None, key: str | None = None
    ) -> tuple[int, Any]:
        """Send one request; return the status and parsed JSON body. 5xx raises."""
        status, body = await self.raw(method, path, doc, key)
        return status, document_of(body)

    async def raw(
        self, method: str, path: str, doc: Any = None, key: str | None = None
    ) -> tuple[int, bytes]:
        """Send one request; return the status and the body's bytes. 5xx raises."""
        headers = [("Authorization", f"Bearer {self.endpoint.token}")]
        body = b"" if doc is None else orjson.dumps(doc)
        if body:
            headers.append(("Content-Type", "application/json"))
        if key:
            headers.append(("Idempotency-Key", key))
        async with self.limit:
            answer = await self.http.request(OutboundRequest(method, path, tuple(headers), body))
        if answer.status >= 500:
            raise UpstreamError(self.name, f"{method} {path} answered {answer.status}")
        return answer.status, answer.body

    async def get(self, path: str) -> tuple[int, Any]:
        """GET ``path``; return the status and parsed JSON body."""
        return await self.call("GET", path)

    async def pages(
        self, path: str, cursor: str = "", limit: int = PAGE
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Yield each page of a list with the cursor after it ("" after the last)."""
        while True:
            sep = "&" if "?" in path else "?"
            _, page = await self.get(f"{path}{sep}limit={limit}&cursor={cursor}")
            cursor = page.get("next_cursor") or ""
            yield page["items"], cursor
            if not cursor:
                return

    async def batches(
        self, kind: str, cursor: str = "", limit: int = PAGE
    ) -> AsyncIterator[tuple[list[int], str]]:
        """Yield the ids of ``kind`` in batches, each with the cursor to resume after it.

        Relations are found through the memories they start from, so their cursor is
        the memories' one.
        """
        source = "/v1/contexts" if kind == "context" else "/v1/memories"
        async for items, after in self.pages(source, cursor, limit):
            if kind != "relation":
                yield [item["id"] for item in items], after
                continue
            lists = await asyncio.gather(
                *(self.get(f"/v1/memories/{item['id']}/relations") for item in items)
            )
            ids = [
                r["id"]
                for item, (_, rels) in zip(items, lists, strict=True)
                for r in rels["items"]
                if r["source_id"] == item["id"]
            ]
            yield ids, after

    async def records(self, kind: str, batch: int = 100) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield every record of ``kind`` whole (memories with content), a batch at a time."""
        async for ids, _ in self.batches(kind, limit=batch):
            found = await asyncio.gather(*(self.one(kind, i) for i in ids))
            yield [record for record in found if record is not None]

    async def one(self, kind: str, record_id: Id) -> dict[str, Any] | None:
        """Return one record whole, or None if the store does not have it."""
        status, body = await self.get(f"{ITEM_PATHS[kind]}{record_id}")
        return body if status == 200 else None

    async def close(self) -> None:
        await self.http.close()

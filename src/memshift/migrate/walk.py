"""Reading a store's records through its API, as its admin, in id order, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from memshift.config.settings import StoreEndpoint
from memshift.errors import UpstreamError
from memshift.upstream import HttpUpstream, OutboundRequest

KINDS = ("context", "memory", "relation")
PAGE = 500


class StoreReader:
    """A store read with its service token."""

    def __init__(self, endpoint: StoreEndpoint) -> None:
        self.endpoint = endpoint
        self.http = HttpUpstream(endpoint)

    async def get(self, path: str) -> tuple[int, Any]:
        """GET ``path``; return the status and parsed JSON body."""
        answer = await self.http.send(
            OutboundRequest("GET", path, (("Authorization", f"Bearer {self.endpoint.token}"),), b"")
        )
        if answer.status >= 500:
            raise UpstreamError(self.endpoint.name, f"GET {path} answered {answer.status}")
        return answer.status, orjson.loads(answer.body) if answer.body else None

    async def pages(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a paged list, in id order."""
        cursor = ""
        while True:
            _, page = await self.get(f"{path}?limit={PAGE}&cursor={cursor}")
            for item in page["items"]:
                yield item
            if not page.get("next_cursor"):
                return
            cursor = page["next_cursor"]

    async def records(self, kind: str) -> AsyncIterator[dict[str, Any]]:
        """Yield every record of ``kind`` whole (memories with content), in id order."""
        if kind == "context":
            async for item in self.pages("/v1/contexts"):
                yield item
        elif kind == "memory":
            async for item in self.pages("/v1/memories"):
                status, whole = await self.get(f"/v1/memories/{item['id']}")
                if status == 200:
                    yield whole
        else:
            seen: set[int] = set()
            async for item in self.pages("/v1/memories"):
                _, rels = await self.get(f"/v1/memories/{item['id']}/relations")
                for rel in rels["items"]:
                    if rel["source_id"] == item["id"] and rel["id"] not in seen:
                        seen.add(rel["id"])
                        yield rel

    async def one(self, kind: str, record_id: int) -> dict[str, Any] | None:
        """Return one record whole, or None if the store does not have it."""
        path = {
            "context": "/v1/contexts/",
            "memory": "/v1/memories/",
            "relation": "/v1/relations/",
        }[kind]
        status, body = await self.get(f"{path}{record_id}")
        return body if status == 200 else None

    async def close(self) -> None:
        await self.http.close()

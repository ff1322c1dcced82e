"""A store's bulk paths, as backfill and verify reach them (``[store] bulk``).

``export`` reads a page of one kind in id order, ``lookup`` the records of a list of
ids, each with its digest (a SHA-256 of everything but ids) and, without content, the
ids it refers to; ``put`` creates a batch in one request, each record once under its
key. A page whose stream lacks its closing count line was cut: that raises, as a 5xx
does, and is never taken for the end of the kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from memshift.errors import UpstreamError
from memshift.ids import Id
from memshift.migrate.walk import StoreClient

BATCH_BYTES = 8 * 1024 * 1024  # of one import request: half the store's default body limit
LOOKUP_MAX = 1000


def usable(*stores: StoreClient) -> bool:
    """Whether every one of ``stores`` has bulk paths."""
    return all(store.endpoint.bulk for store in stores)


class Bulk:
    """The bulk paths of one store."""

    def __init__(self, store: StoreClient) -> None:
        self.store = store
        self.prefix = store.endpoint.bulk

    async def export(
        self, kind: str, after: Id, limit: int, *, content: bool = False, digest: bool = True
    ) -> list[dict[str, Any]]:
        """Return up to ``limit`` records of ``kind`` after id ``after``, in id order
        (``digest=False``: ids and versions only, which cost the store no reading)."""
        flags = f"content={str(content).lower()}&digest={str(digest).lower()}"
        path = f"{self.prefix}/export/{kind}?after={after}&limit={limit}&{flags}"
        status, body = await self.store.raw("GET", path)
        if status != 200:
            raise UpstreamError(self.store.name, f"GET {path} answered {status}")
        lines = [orjson.loads(line) for line in body.splitlines() if line.strip()]
        if (
            not lines
            or lines[-1].get("end") is not True
            or lines[-1].get("count") != len(lines) - 1
        ):
            raise UpstreamError(self.store.name, f"GET {path}: the stream was cut")
        return [_record(line) if content and digest else line for line in lines[:-1]]

    async def lookup(
        self, kind: str, ids: Sequence[Id], *, content: bool = False, digest: bool = True
    ) -> dict[Id, dict[str, Any]]:
        """Return ``{id: line}`` for those of ``ids`` the store has."""
        found: dict[Id, dict[str, Any]] = {}
        for at in range(0, len(ids), LOOKUP_MAX):
            part = ids[at : at + LOOKUP_MAX]
            path = f"{self.prefix}/lookup/{kind}"
            ask = {"ids": part, "content": content, "digest": digest}
            status, doc = await self.store.call("POST", path, ask)
            if status != 200 or not isinstance(doc, dict):
                raise UpstreamError(self.store.name, f"POST {path} answered {status}")
            for line in doc["items"]:
                found[line["id"]] = _record(line) if content and digest else line
        return found

    async def put(self, kind: str, batch: list[tuple[str, dict[str, Any]]]) -> tuple[int, Any]:
        """Create ``(key, body)`` records in one request; return the status and answer."""
        records = [{"key": key, "record": body} for key, body in batch]
        return await self.store.call("POST", f"{self.prefix}/import/{kind}", {"records": records})


def _record(line: dict[str, Any]) -> dict[str, Any]:
    """A whole record as ``GET`` of it answers (its digest set apart)."""
    return {k: v for k, v in line.items() if k != "digest"}


def chunks(sizes: list[int], limit: int = BATCH_BYTES) -> list[range]:
    """Split items of ``sizes`` bytes into runs of at most ``limit`` bytes (one at least)."""
    out, start, total = [], 0, 0
    for at, size in enumerate(sizes):
        if at > start and total + size > limit:
            out.append(range(start, at))
            start, total = at, 0
        total += size
    if start < len(sizes):
        out.append(range(start, len(sizes)))
    return out

"""Id translation between the stores, through the id map.

A value is an id when the route says so: a ``{kind}`` path segment made of digits, a
configured query parameter, or an integer at a configured JSON path. Every id of a
request or answer is translated in one batch per kind. When any id has no pair yet, the
whole translation fails (None or False) and the caller falls back to the primary,
so a client never sees another store's id.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from memshift import jsonpath
from memshift.config.settings import RouteSpec, StoreName
from memshift.shadow.idmap import IdMap
from memshift.shadow.routes import RouteMatch


def _as_id(value: Any) -> int | None:
    if type(value) is int and value > 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


class Translator:
    """Translates the ids of requests and answers from one store's ids to the other's."""

    def __init__(self, idmap: IdMap) -> None:
        self.idmap = idmap

    async def _batch(
        self, wanted: dict[str, set[int]], source: StoreName, target: StoreName
    ) -> dict[str, dict[int, int]] | None:
        out: dict[str, dict[int, int]] = {}
        for kind, ids in wanted.items():
            out[kind] = await self.idmap.translate(kind, ids, source, target)
            if len(out[kind]) != len(ids):
                return None
        return out

    async def path(self, match: RouteMatch, source: StoreName, target: StoreName) -> str | None:
        """Return the request path with translated ids, or None if one is unmapped."""
        if source == target or not match.params:
            return match.path_with(match.params)
        wanted: dict[str, set[int]] = defaultdict(set)
        for kind, value in zip(match.spec.path_kinds, match.params, strict=True):
            found = _as_id(value)
            if found is not None:
                wanted[kind].add(found)
        table = await self._batch(wanted, source, target)
        if table is None:
            return None
        params = tuple(
            str(table[kind][i]) if (i := _as_id(v)) is not None else v
            for kind, v in zip(match.spec.path_kinds, match.params, strict=True)
        )
        return match.path_with(params)

    async def query(
        self,
        pairs: list[tuple[str, str]],
        spec: RouteSpec,
        source: StoreName,
        target: StoreName,
    ) -> list[tuple[str, str]] | None:
        """Return query pairs with translated ids, or None if one is unmapped."""
        kinds = dict(spec.query_ids)
        if source == target or not kinds:
            return pairs
        wanted: dict[str, set[int]] = defaultdict(set)
        for name, value in pairs:
            if name in kinds and (found := _as_id(value)) is not None:
                wanted[kinds[name]].add(found)
        table = await self._batch(wanted, source, target)
        if table is None:
            return None
        return [
            (n, str(table[kinds[n]][i]) if n in kinds and (i := _as_id(v)) is not None else v)
            for n, v in pairs
        ]

    async def document(
        self,
        doc: Any,
        paths: tuple[tuple[jsonpath.Path, str], ...],
        source: StoreName,
        target: StoreName,
    ) -> bool:
        """Translate, in place, the ids at ``paths`` in ``doc``; False if one is unmapped."""
        if source == target or not paths:
            return True
        wanted: dict[str, set[int]] = defaultdict(set)
        found = [(kind, jsonpath.places(doc, path)) for path, kind in paths]
        for kind, places in found:
            for container, key in places:
                if type(value := container[key]) is int:
                    wanted[kind].add(value)
        if not wanted:
            return True  # no ids here (a create without a context, say)
        table = await self._batch(wanted, source, target)
        if table is None:
            return False
        for kind, places in found:
            pairs = table.get(kind, {})
            for container, key in places:
                if type(value := container[key]) is int:
                    container[key] = pairs.get(value, value)
        return True

    async def request(
        self,
        match: RouteMatch,
        path_qs: str,
        body: bytes,
        target: StoreName,
        fill: dict[str, Any] | None = None,
    ) -> tuple[str, bytes] | None:
        """Return path and body of a client request as ``target`` must get them.

        Legacy gets the client's bytes untouched; for new, ids are translated (and the
        body re-encoded only when it may hold ids). ``fill``: fields set in the body's
        object (which is then re-encoded for either store). The same input always gives
        the same bytes, which a store's idempotency check relies on. None when an id is
        unmapped.
        """
        translate = target != "legacy"
        if translate:
            raw_query = path_qs.partition("?")[2]
            path = await self.path(match, "legacy", target)
            query = await self.query(
                parse_qsl(raw_query, keep_blank_values=True), match.spec, "legacy", target
            )
            if path is None or query is None:
                return None
            path_qs = f"{path}?{urlencode(query)}" if query else path
        ids = match.spec.request_ids if translate else ()
        if body and (ids or fill):
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None  # the store will refuse it, the same way on both sides
            if isinstance(doc, dict):
                if ids and not await self.document(doc, ids, "legacy", target):
                    return None
                if fill:
                    doc |= fill
                body = orjson.dumps(doc)
        return path_qs, body

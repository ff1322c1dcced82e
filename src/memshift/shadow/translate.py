"""Id translation between the stores, through the id map.

A value is an id when the route says so: a ``{kind}`` path segment, a configured query
parameter, or a value at a configured JSON path. Clients speak legacy's ids, so a
value on legacy's side is read in its kind's form (``ids.py``): every spelling of one
id is that id, and a value that is no id of its kind makes the translation fail. On
new's side, ids are taken as new gives them (an integer or a string).

Every id of a request or answer is translated in one batch per kind; ids of a
``natural`` kind are the same in both stores. When any id has no pair, or a declared
position holds something that is not an id, the whole translation fails (None or
False): the request does not go to that store (a read is served by the primary, a
write waits for a pair), so a client never sees another store's id and a store never
gets an id that means another record there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import orjson

from memshift import jsonpath
from memshift.config.settings import RouteSpec, StoreName
from memshift.ids import Id, IdForms
from memshift.shadow.idmap import IdMap
from memshift.shadow.routes import RouteMatch

Table = dict[str, dict[Id, Id]]


def _raw(value: object) -> Id | None:
    """An id as a store gave it: an integer or a non-empty string."""
    if type(value) is int or (isinstance(value, str) and value):
        return value
    return None


class Translator:
    """Translates the ids of requests and answers from one store's ids to the other's."""

    def __init__(self, idmap: IdMap, forms: Callable[[], IdForms] = IdForms) -> None:
        self.idmap = idmap
        self.forms = forms

    def canonical(self, kind: str, value: object, store: StoreName) -> Id | None:
        """``value`` as an id of ``kind`` on ``store``'s side; None when it is none."""
        if store == "legacy" or self.forms().natural(kind):
            return self.forms().canonical(kind, value)
        return _raw(value)

    async def _batch(
        self, wanted: dict[str, set[Id]], source: StoreName, target: StoreName
    ) -> Table | None:
        out: Table = {}
        forms = self.forms()
        for kind, ids in wanted.items():
            if forms.natural(kind):
                out[kind] = {i: i for i in ids}
                continue
            out[kind] = await self.idmap.translate(kind, ids, source, target)
            if len(out[kind]) != len(ids):
                return None
        return out

    async def path(self, match: RouteMatch, source: StoreName, target: StoreName) -> str | None:
        """Return the request path with translated ids, or None if one is not translatable."""
        if source == target or not match.params:
            return match.path_with(match.params)
        found: list[tuple[str, Id]] = []
        for kind, segment in zip(match.spec.path_kinds, match.params, strict=True):
            value = self.canonical(kind, unquote(segment), source)
            if value is None:
                return None
            found.append((kind, value))
        wanted: dict[str, set[Id]] = defaultdict(set)
        for kind, value in found:
            wanted[kind].add(value)
        table = await self._batch(wanted, source, target)
        if table is None:
            return None
        params = tuple(quote(str(table[kind][value]), safe="") for kind, value in found)
        return match.path_with(params)

    async def query(
        self,
        pairs: list[tuple[str, str]],
        spec: RouteSpec,
        source: StoreName,
        target: StoreName,
    ) -> list[tuple[str, str]] | None:
        """Return query pairs with translated ids, or None if one is not translatable."""
        kinds = dict(spec.query_ids)
        if source == target or not kinds:
            return pairs
        found: dict[int, tuple[str, Id]] = {}
        for n, (name, text) in enumerate(pairs):
            if name in kinds:
                canonical = self.canonical(kinds[name], text, source)
                if canonical is None:
                    return None
                found[n] = (kinds[name], canonical)
        wanted: dict[str, set[Id]] = defaultdict(set)
        for kind, value in found.values():
            wanted[kind].add(value)
        table = await self._batch(wanted, source, target)
        if table is None:
            return None
        return [
            (name, str(table[found[n][0]][found[n][1]]) if n in found else text)
            for n, (name, text) in enumerate(pairs)
        ]

    async def document(
        self,
        doc: Any,
        paths: tuple[tuple[jsonpath.Path, str], ...],
        source: StoreName,
        target: StoreName,
    ) -> bool:
        """Translate, in place, the ids at ``paths`` in ``doc``; False if one is not
        translatable. A null at an id position (an optional reference left out) stays."""
        if source == target or not paths:
            return True
        found: list[tuple[Any, Any, str, Id]] = []
        for path, kind in paths:
            for container, key in jsonpath.places(doc, path):
                value = container[key]
                if value is None:
                    continue
                canonical = self.canonical(kind, value, source)
                if canonical is None:
                    return False
                found.append((container, key, kind, canonical))
        if not found:
            return True  # no ids here (a create without a context, say)
        wanted: dict[str, set[Id]] = defaultdict(set)
        for _, _, kind, value in found:
            wanted[kind].add(value)
        table = await self._batch(wanted, source, target)
        if table is None:
            return False
        for container, key, kind, value in found:
            container[key] = table[kind][value]
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
        the same bytes, which a store's idempotency check relies on. None when an id
        cannot be translated.
        """
        translate = target != "legacy"
        if translate and not match.params and "?" not in path_qs:
            path_qs = match.spec.path  # no id in the path or a query (a collection's)
        elif translate:
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

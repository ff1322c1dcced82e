"""A store's records, read and written by the recipes of its profile (``[records.KIND]``).

A recipe's call is a tool (with arguments) or a configured route (method, path
segments, query, JSON body); strings in them that start with ``$`` are JSON paths into
the record at hand (``"$"`` is the record itself, less its ``drop`` fields). An
export may be paged: by offset (``page = { offset = "offset", next =
"$.pagination.nextOffset" }``) or by cursor (``{ cursor = "cursor", next =
"$.next_cursor" }``), with an optional ``limit`` argument and page ``size``.

A call the store refuses raises ``Refused`` with its answer; one it does not answer
raises ``UpstreamError``, as everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson

from memshift import jsonpath
from memshift.config.settings import RecordRecipe, RouteSpec, Settings, StoreCall, StoreName
from memshift.ids import Id
from memshift.jsonpath import document_of
from memshift.links.wire import OutboundRequest, UpstreamResponse
from memshift.mcp import protocol
from memshift.shadow.routes import RouteMatch

Send = Callable[[StoreName, OutboundRequest, str, str], Awaitable[UpstreamResponse]]
MAX_PAGES = 1_000_000


class Refused(Exception):
    """A store refused a recipe's call; ``status`` and ``document`` are its answer."""

    def __init__(self, store: StoreName, what: str, status: int, document: Any) -> None:
        super().__init__(f"{store}: {what} answered {status}: {_short(document)}")
        self.store = store
        self.status = status
        self.document = document


def _short(document: Any) -> str:
    text = orjson.dumps(document).decode() if document is not None else "nothing"
    return text if len(text) <= 300 else text[:300] + "…"


def expand(template: Any, record: dict[str, Any] | None, drop: tuple[jsonpath.Path, ...]) -> Any:
    """``template`` with every ``$`` string replaced by what it names in ``record``; in a
    table, a field whose path names nothing (or null) is left out, not sent as null."""
    if isinstance(template, str) and template.startswith("$"):
        if record is None:
            return None
        if template == "$":
            return without(record, drop)
        found = jsonpath.values(record, jsonpath.parse(template))
        return found[0] if len(found) == 1 else (found or None)
    if isinstance(template, list):
        return [expand(item, record, drop) for item in template]
    if isinstance(template, dict):  # a field whose path names nothing is left out
        out = {key: expand(value, record, drop) for key, value in template.items()}
        return {
            key: value
            for key, value in out.items()
            if value is not None or not _is_path(template[key])
        }
    return template


def _is_path(template: Any) -> bool:
    return isinstance(template, str) and template.startswith("$")


def without(record: dict[str, Any], drop: tuple[jsonpath.Path, ...]) -> dict[str, Any]:
    """A copy of ``record`` without the fields at ``drop``."""
    out = orjson.loads(orjson.dumps(record))
    for path in drop:
        for container, key in jsonpath.places(out, path):
            if isinstance(container, dict):
                container.pop(key, None)
    return dict(out)


class RecordIO:
    """One store's records, as its profile's recipes read and write them."""

    def __init__(self, store: StoreName, send: Send, settings: Settings) -> None:
        self.store = store
        self.send = send
        self.settings = settings
        self.routes = {r.name: r for r in settings.routes}

    def _request(
        self, call: StoreCall, record: dict[str, Any] | None, extra: dict[str, Any]
    ) -> OutboundRequest:
        endpoint = self.settings.stores[self.store]
        headers = [("Authorization", f"Bearer {endpoint.token}")] if endpoint.token else []
        if call.tool:
            arguments = expand(call.arguments or {}, record, call.drop)
            body = orjson.dumps({**arguments, **extra})
            headers.append(("Content-Type", "application/json"))
            return OutboundRequest(protocol.TOOL, f"/mcp/tools/{call.tool}", tuple(headers), body)
        spec: RouteSpec = self.routes[str(call.route)]
        values = expand(call.path, record, call.drop)
        segments = tuple(quote(str(values.get(kind, "")), safe="") for kind in spec.path_kinds)
        path = RouteMatch(spec, segments).path_with(segments)
        query = {**expand(call.query, record, call.drop), **extra}
        if query:
            path += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        body = b""
        if call.arguments is not None:
            body = orjson.dumps(expand(call.arguments, record, call.drop))
            headers.append(("Content-Type", "application/json"))
        return OutboundRequest(call.method, path, tuple(headers), body)

    async def _call(
        self, call: StoreCall, record: dict[str, Any] | None, what: str, **extra: Any
    ) -> Any:
        request = self._request(call, record, extra)
        answer = await self.send(self.store, request, call.tool or str(call.route), "migrate")
        document = document_of(answer.body)
        if not 200 <= answer.status < 300:
            raise Refused(self.store, what, answer.status, document)
        return document

    async def export(self, recipe: RecordRecipe) -> AsyncIterator[list[dict[str, Any]]]:
        """Every record of ``recipe``'s kind, a page at a time."""
        call = recipe.export
        assert call.items is not None, "an export says where its records are"
        page = call.page
        position: Any = None
        for _ in range(MAX_PAGES):
            extra: dict[str, Any] = {}
            if "limit" in page:
                extra[page["limit"]] = int(page.get("size", "100"))
            for name in ("offset", "cursor"):
                if name in page and position is not None:
                    extra[page[name]] = position
            document = await self._call(call, None, f"export {recipe.kind}", **extra)
            records = [r for r in jsonpath.values(document, call.items) if isinstance(r, dict)]
            yield records
            if "next" not in page:
                return
            found = jsonpath.values(document, jsonpath.parse(page["next"]))
            position = found[0] if found else None
            if position in (None, "", False):
                return
        raise Refused(self.store, f"export {recipe.kind}", 0, "more pages than memshift reads")

    async def create(self, recipe: RecordRecipe, record: dict[str, Any]) -> Any:
        """Create ``record``; return the store's answer (where a new id may be)."""
        assert recipe.create is not None
        return await self._call(recipe.create, record, f"create {recipe.kind}")

    async def delete(self, recipe: RecordRecipe, record: dict[str, Any]) -> None:
        """Delete ``record`` (its key and ids as this store has them)."""
        assert recipe.delete is not None
        await self._call(recipe.delete, record, f"delete {recipe.kind}")

    async def update(self, recipe: RecordRecipe, record: dict[str, Any]) -> None:
        """Make the store's copy of ``record`` equal to it."""
        assert recipe.update is not None
        await self._call(recipe.update, record, f"update {recipe.kind}")


def created_id(settings: Settings, recipe: RecordRecipe, answer: Any) -> Id | None:
    """The id a create gave, at the create call's route or tool's ``created_id``."""
    call = recipe.create
    if call is None:
        return None
    spec = next(
        (
            s
            for s in (*settings.routes, *settings.tools)
            if s.name == call.route or s.tool == call.tool
        ),
        None,
    )
    if spec is None or spec.creates is None:
        return None
    found = jsonpath.values(answer, spec.created_id)
    value = found[0] if found else None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None

"""A legacy-style memory service, written for the tests: what memshift meets in the wild.

    python -m tests.doubles.legacy_style --listen 127.0.0.1:PORT --file PATH

Unlike the reference store it has string ids in nested JSON (``{"memory": {"memory_id":
"m-3", ...}}``), ids given in creation order and reused after a delete (the smallest
free one), no users and no authentication, no ``Idempotency-Key``, one lock for the
whole store, and one JSON file rewritten whole on every write.

    POST   /contexts {name}                          201 {"context": {...}}
    GET    /contexts                                 {"contexts": [...]}
    GET    /contexts/{context_id}                    {"context": {...}}
    POST   /memories {title, content, context_id?}   201 {"memory": {...}}
    GET    /memories                                 {"memories": [...]}
    GET    /memories/{memory_id}                     {"memory": {...}}
    PATCH  /memories/{memory_id} {title?, content?, context_id?}   {"memory": {...}}
    DELETE /memories/{memory_id}                     204

What memshift must be told about it is the profile beside it, ``legacy-style.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

KINDS = {"contexts": ("context", "c"), "memories": ("memory", "m")}
FIELDS = {"contexts": ("name",), "memories": ("title", "content", "context_id")}
STATE = web.AppKey("state", dict)
LOCK = web.AppKey("lock", asyncio.Lock)
FILE = web.AppKey("file", Path)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _save(app: web.Application) -> None:
    path = app[FILE]
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(app[STATE]))
    temporary.replace(path)


def _next_id(records: dict[str, Any], prefix: str) -> str:
    taken = {int(i.split("-", 1)[1]) for i in records}
    number = 1
    while number in taken:
        number += 1
    return f"{prefix}-{number}"


async def _body(request: web.Request, plural: str, create: bool) -> dict[str, Any] | web.Response:
    try:
        doc = await request.json()
    except ValueError:
        return _error(400, "not JSON")
    if not isinstance(doc, dict) or set(doc) - set(FIELDS[plural]):
        return _error(422, f"fields: {', '.join(FIELDS[plural])}")
    if create and not all(doc.get(f) for f in FIELDS[plural] if f != "context_id"):
        return _error(422, "missing fields")
    return doc


def _routes(plural: str) -> list[web.RouteDef]:
    kind, prefix = KINDS[plural]
    key = f"{kind}_id"

    async def create(request: web.Request) -> web.Response:
        doc = await _body(request, plural, create=True)
        if isinstance(doc, web.Response):
            return doc
        async with request.app[LOCK]:
            records = request.app[STATE][plural]
            if doc.get("context_id") and doc["context_id"] not in request.app[STATE]["contexts"]:
                return _error(422, "no such context")
            record = {key: _next_id(records, prefix), **doc}
            records[record[key]] = record
            _save(request.app)
        return web.json_response({kind: record}, status=201)

    async def listed(request: web.Request) -> web.Response:
        records = request.app[STATE][plural]
        return web.json_response({plural: sorted(records.values(), key=lambda r: r[key])})

    async def one(request: web.Request) -> web.Response:
        record = request.app[STATE][plural].get(request.match_info["id"])
        return web.json_response({kind: record}) if record else _error(404, "not found")

    async def change(request: web.Request) -> web.Response:
        doc = await _body(request, plural, create=False)
        if isinstance(doc, web.Response):
            return doc
        async with request.app[LOCK]:
            record = request.app[STATE][plural].get(request.match_info["id"])
            if record is None:
                return _error(404, "not found")
            record.update(doc)
            _save(request.app)
        return web.json_response({kind: record})

    async def remove(request: web.Request) -> web.Response:
        async with request.app[LOCK]:
            if request.app[STATE][plural].pop(request.match_info["id"], None) is None:
                return _error(404, "not found")
            _save(request.app)
        return web.Response(status=204)

    item = f"/{plural}/{{id}}"
    out = [web.post(f"/{plural}", create), web.get(f"/{plural}", listed), web.get(item, one)]
    if plural == "memories":
        out += [web.patch(item, change), web.delete(item, remove)]
    return out


def make_app(path: Path) -> web.Application:
    """The service over the JSON file at ``path`` (made when missing)."""
    app = web.Application()
    app[FILE] = path
    app[LOCK] = asyncio.Lock()
    app[STATE] = json.loads(path.read_text()) if path.exists() else {"contexts": {}, "memories": {}}
    app.router.add_routes([*_routes("contexts"), *_routes("memories")])
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--file", required=True, type=Path, help="the JSON file it keeps")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    web.run_app(make_app(args.file), host=host, port=int(port), print=None)


if __name__ == "__main__":
    main()

"""Bulk paths for migration: every record of a kind out as a stream, a batch in at once.

Admin only. ``GET /v1/bulk/export/{kind}`` streams the records of one kind in id order
as NDJSON, from ``after``, up to ``limit``: each line the record as ``GET`` answers it
(``content=false``: its id, the ids it refers to and its version only) with
``digest``, a SHA-256 of everything but ids, so that two stores' records compare
without their bodies (``digest=false``: without it, for a walk that needs only ids).
The last line is ``{"end": true, "count": N}``: a stream without it was cut.
``POST /v1/bulk/lookup/{kind}`` answers the same lines for a list of ids.
``POST /v1/bulk/import/{kind}`` creates a batch of records, with their provenance, in
one transaction; each record carries its own idempotency key, kept as ``POST`` of that
record with the key would keep it, so a batch sent again (or its records sent one by
one) creates nothing twice.

A memory's digest covers its content's SHA-256, which the ``new`` engine keeps (its
blob address), so digests of compressed content are read without decompressing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import Connection, Table, select

from memshift.errors import ApiError, unprocessable
from memshift.store import idempotency
from memshift.store.api import PRINCIPAL, STATE, body_of, call_of, decode_json
from memshift.store.call import Call
from memshift.store.contexts import context_json, create_context
from memshift.store.memories import insert_memory, memory_json
from memshift.store.relations import insert_relation, relation_json
from memshift.store.schema import contexts, memories, relations
from memshift.store.validation import (
    CONTEXT_CREATE,
    MAX_ID,
    MEMORY_CREATE,
    RELATION_CREATE,
    Field,
    parse_body,
    query_int,
)
from memshift.webutil import json_response

KINDS: dict[str, Table] = {"context": contexts, "memory": memories, "relation": relations}
CREATE_PATHS = {"context": "/v1/contexts", "memory": "/v1/memories", "relation": "/v1/relations"}
FIELDS: dict[str, tuple[Field, ...]] = {
    "context": CONTEXT_CREATE,
    "memory": MEMORY_CREATE,
    "relation": RELATION_CREATE,
}
REFS = {"context": (), "memory": ("context_id",), "relation": ("source_id", "target_id")}
EXPORT_DEFAULT, EXPORT_MAX = 1000, 100_000
PAGE = 200  # rows per read transaction of a stream
BATCH_MAX = 1000  # ids of a lookup, records of an import
NDJSON = "application/x-ndjson"


def digest_of(fields: dict[str, Any]) -> str:
    """The SHA-256 of ``fields`` as canonical JSON."""
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _line(
    conn: Connection, call: Call, kind: str, row: Any, full: bool, digest: bool = True
) -> dict[str, Any]:
    """One record as export and lookup give it."""
    if not full and not digest:  # ids and version only: nothing to read or hash
        refs = {name: getattr(row, name) for name in REFS[kind]}
        return {"id": row.id, **refs, "version": row.version}
    if kind == "memory":
        content = call.content.load(conn, row) if full else None
        record = memory_json(row, content)
        own = {k: v for k, v in record.items() if k not in ("id", "content", "context_id")}
        own["content_sha256"] = call.content.digest(row)
    else:
        record = context_json(row) if kind == "context" else relation_json(row)
        own = {k: v for k, v in record.items() if k != "id" and k not in REFS[kind]}
    if full:
        return {**record, "digest": digest_of(own)} if digest else record
    refs = {name: record[name] for name in REFS[kind]}
    return {"id": row.id, **refs, "version": row.version, "digest": digest_of(own)}


def _rows(
    conn: Connection,
    kind: str,
    *,
    after: int = 0,
    ids: list[int] | None = None,
    limit: int = PAGE,
    thin: bool = False,
) -> list[Any]:
    """Rows of ``kind`` after ``after`` or of ``ids``; ``thin``: ids and version only."""
    table = KINDS[kind]
    names = ("id", *REFS[kind], "version") if thin else None
    query = select(*(table.c[n] for n in names)) if names else select(table)
    query = query.where(table.c.id.in_(ids)) if ids is not None else query.where(table.c.id > after)
    return list(conn.execute(query.order_by(table.c.id).limit(limit)).all())


def _admin_call(request: web.Request) -> Call:
    if not request[PRINCIPAL].admin:
        raise ApiError(403, "forbidden", "bulk export and import are for an admin token")
    return call_of(request)


def _kind(request: web.Request) -> str:
    kind = request.match_info["kind"]
    if kind not in KINDS:
        raise ApiError(404, "not_found", f"no kind {kind[:40]!r}: context, memory or relation")
    return kind


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "true").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, f"invalid_{name}", f"{name} must be true or false")
    return value in ("true", "1")


async def export(request: web.Request) -> web.StreamResponse:
    """Stream the records of one kind in id order (see the module)."""
    call = _admin_call(request)
    kind = _kind(request)
    after = query_int(request.query, "after", default=0, low=0, high=MAX_ID)
    limit = query_int(request.query, "limit", default=EXPORT_DEFAULT, low=1, high=EXPORT_MAX)
    full, digest = _flag(request, "content"), _flag(request, "digest")
    thin = not (full or digest)
    db = request.app[STATE].db
    response = web.StreamResponse(headers={"Content-Type": NDJSON})
    await response.prepare(request)
    sent = 0
    while sent < limit:
        want = min(PAGE, limit - sent)

        def page(conn: Connection, at: int = after, want: int = want) -> list[dict[str, Any]]:
            rows = _rows(conn, kind, after=at, limit=want, thin=thin)
            return [_line(conn, call, kind, r, full, digest) for r in rows]

        lines = await db.read(page)
        if lines:
            await response.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            after, sent = lines[-1]["id"], sent + len(lines)
        if len(lines) < want:
            break
    await response.write(orjson.dumps({"end": True, "count": sent}) + b"\n")
    await response.write_eof()
    return response


def _list_of(doc: Any, name: str) -> list[Any]:
    if not isinstance(doc, dict) or not isinstance(doc.get(name), list):
        raise unprocessable(f"the body must be an object with a list {name!r}")
    found: list[Any] = doc[name]
    if len(found) > BATCH_MAX:
        raise unprocessable(f"{name}: at most {BATCH_MAX} at once", "batch_too_large")
    return found


async def _json(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    return decode_json(await body_of(request), request.app[STATE].settings.max_json_depth)


async def lookup(request: web.Request) -> web.Response:
    """The export lines of the listed ids that exist, in id order."""
    call = _admin_call(request)
    kind = _kind(request)
    doc = await _json(request)
    ids = _list_of(doc, "ids")
    if not all(type(i) is int and 1 <= i <= MAX_ID for i in ids):
        raise unprocessable("ids: each must be a record id", "invalid_id")
    full, digest = doc.get("content", False), doc.get("digest", True)
    for name, value in (("content", full), ("digest", digest)):
        if not isinstance(value, bool):
            raise unprocessable(f"{name}: must be true or false")
    thin = not (full or digest)

    def find(conn: Connection) -> list[dict[str, Any]]:
        rows = _rows(conn, kind, ids=ids, limit=len(ids) or 1, thin=thin) if ids else []
        return [_line(conn, call, kind, r, full, digest) for r in rows]

    return json_response({"items": await request.app[STATE].db.read(find)})


async def import_(request: web.Request) -> web.Response:
    """Create a batch of records in one transaction, each once under its own key."""
    call = _admin_call(request)
    kind = _kind(request)
    items = _list_of(await _json(request), "records")
    batch: list[tuple[str, dict[str, Any], str]] = []
    for at, item in enumerate(items):
        with _at(at):
            if not isinstance(item, dict) or set(item) != {"key", "record"}:
                raise unprocessable("must be an object with key and record")
            key = idempotency.check_key(item["key"]) if isinstance(item["key"], str) else None
            if key is None:
                raise unprocessable("key: must be a string")
            data = parse_body(item["record"], FIELDS[kind], admin=True)
            # The fingerprint POST of this record with this key would have: one keyspace.
            fp = idempotency.fingerprint("POST", CREATE_PATHS[kind], orjson.dumps(item["record"]))
            batch.append((key, data, fp))
    create = _CREATE[kind]

    def transaction(conn: Connection) -> list[dict[str, Any]]:
        out = []
        for at, (key, data, fp) in enumerate(batch):
            with _at(at):
                found = idempotency.recall(conn, call.who.user, key, fp)
                if found is not None:
                    out.append({"key": key, "id": orjson.loads(found.body)["id"], "replayed": True})
                    continue
                new_id = create(conn, call, data)
                answer = idempotency.Answer(201, orjson.dumps({"id": new_id}))
                idempotency.remember(conn, call.who.user, key, fp, answer, call.now)
                out.append({"key": key, "id": new_id, "replayed": False})
        return out

    return json_response({"items": await request.app[STATE].db.write(transaction)})


@contextmanager
def _at(index: int) -> Iterator[None]:
    """Name the failing record of a batch in the error it raises."""
    try:
        yield
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, f"records[{index}]: {exc.message}") from None


_CREATE: dict[str, Callable[[Connection, Call, dict[str, Any]], int]] = {
    "context": lambda conn, call, data: int(create_context(conn, call, data)["id"]),
    "memory": insert_memory,
    "relation": insert_relation,
}

"""The store's aiohttp application: set-up, middleware, and the read/write helpers.

Every answer is JSON; every failure is ``{"error": {"code", "message"}}`` with a fitting
status, and no traceback ever reaches a client. Each handler runs its whole operation as
one transaction off the event loop (``Database.read``/``write``); writes honour
``Idempotency-Key``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
import structlog
from aiohttp import web
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError as SAIntegrityError
from sqlalchemy.exc import OperationalError

from memshift.database import Database
from memshift.errors import ApiError, bad_request
from memshift.limits import check_depth, depth_error
from memshift.store import idempotency
from memshift.store.call import Call
from memshift.store.content import ContentStore
from memshift.store.settings import StoreSettings
from memshift.store.tokens import Principal
from memshift.webutil import Handler, answer_errors, error_response, json_response, read_body

log = structlog.get_logger("memshift.store")

Operation = Callable[[Connection, Call], Any]
PURGE_EVERY_US = 60_000_000
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class StoreState:
    """Everything a store's handlers share."""

    settings: StoreSettings
    tokens: dict[str, Principal]
    db: Database
    content: ContentStore
    last_purge: int = 0
    admins: frozenset[str] = frozenset()  # users some token makes an admin


STATE = web.AppKey("store_state", StoreState)
PRINCIPAL = web.RequestKey("principal", Principal)
BODY = web.RequestKey("body", bytes)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the JSON error answer, and log the request."""
    started = time.perf_counter()
    response = await answer_errors(request, partial(_database_errors, handler=handler))
    route = request.match_info.route.resource
    log.debug(
        "request",
        method=request.method,
        route=route.canonical if route else request.path,
        status=response.status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return response


async def _database_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SAIntegrityError:
        log.warning("integrity_conflict", method=request.method, path=request.path, exc_info=True)
        return error_response(409, "conflict", "the change conflicts with stored records")
    except OperationalError:
        log.exception("database_unavailable")
        return error_response(503, "unavailable", "the database is busy or unreachable")


ACT_AS = "X-Act-As"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})  # served without a token


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the bearer token to a principal; 401 without a known token.

    An admin may send ``X-Act-As: <user>`` to act as that user, with that user's rights
    (an admin's, if the tokens make that user one) and the right to set a record's
    provenance: the write belongs to that user, its ``Idempotency-Key`` is that user's,
    and it can change only what that user could. This is how memshift replays a user's
    write without ever keeping the user's token, and why a mirrored write can never
    change another user's record.
    """
    if request.path in PUBLIC_PATHS:
        return await handler(request)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    who = request.app[STATE].tokens.get(token.strip()) if scheme.lower() == "bearer" else None
    if who is None:
        response = error_response(401, "unauthorized", "a valid bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    acting = request.headers.get(ACT_AS)
    if acting is not None:
        if not who.admin:
            return error_response(403, "forbidden", f"only an admin may send {ACT_AS}")
        if not 1 <= len(acting) <= 200 or not acting.isprintable():
            return error_response(400, "invalid_act_as", f"{ACT_AS} must name a user")
        admins = request.app[STATE].admins
        who = Principal(acting, admin=acting in admins, acting=True)
    request[PRINCIPAL] = who
    return await handler(request)


def call_of(request: web.Request) -> Call:
    """Return the ``Call`` for this request."""
    return Call(who=request[PRINCIPAL], content=request.app[STATE].content)


async def body_of(request: web.Request) -> bytes:
    """The request's body, read once within the store's limits (``limits.read_body``)."""
    if BODY not in request:
        settings = request.app[STATE].settings
        limit = settings.body_limit(request[PRINCIPAL].acting)
        request[BODY] = await read_body(request, limit, settings.body_timeout_s)
    return request[BODY]


async def read_json(request: web.Request) -> Any:
    """Return the request's JSON body; raise 415/400/413/422 for one that is not usable."""
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise ApiError(415, "unsupported_media_type", "the body must be UTF-8")
    raw = await body_of(request)
    if not raw:
        raise bad_request("a JSON body is required", "empty_body")
    return decode_json(raw, request.app[STATE].settings.max_json_depth)


def decode_json(raw: bytes, max_depth: int) -> Any:
    """``raw`` decoded; 400 for text that is not UTF-8 JSON, 422 for JSON nested too deep."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(
            f"the body is not valid UTF-8 at byte {exc.start}", "invalid_utf8"
        ) from exc
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise depth_error(max_depth) from None
        raise bad_request(f"malformed JSON: {exc}", "malformed_json") from exc
    check_depth(doc, raw, max_depth)
    return doc


async def read(request: web.Request, op: Operation) -> web.Response:
    """Run ``op`` in a read transaction and answer its result as JSON."""
    call = call_of(request)
    result = await request.app[STATE].db.read(lambda conn: op(conn, call))
    return json_response(result)


async def run_write(
    state: StoreState, call: Call, op: Operation, status: int, key: str | None, fp: str
) -> tuple[idempotency.Answer, bool]:
    """Run ``op`` in a write transaction, honouring an idempotency key.

    Return the answer and whether it was replayed from an earlier request with the
    same key. REST and MCP writes both come through here.
    """

    def transaction(conn: Connection) -> tuple[idempotency.Answer, bool]:
        if call.now - state.last_purge > PURGE_EVERY_US:
            state.last_purge = call.now
            idempotency.purge(conn, call.now - state.settings.idempotency_ttl_s * 1_000_000)
        if key is not None:
            found = idempotency.recall(conn, call.who.user, key, fp)
            if found is not None:
                return found, True
        result = op(conn, call)
        answer = idempotency.Answer(status, b"" if status == 204 else orjson.dumps(result))
        if key is not None:
            idempotency.remember(conn, call.who.user, key, fp, answer, call.now)
        return answer, False

    try:
        return await state.db.write(transaction)
    except SAIntegrityError:
        if key is None:
            raise
        # A concurrent request with the same key committed first: answer as it did.
        return await state.db.write(transaction)


async def write(request: web.Request, op: Operation, status: int = 200) -> web.Response:
    """Run ``op`` in a write transaction, honouring ``Idempotency-Key``; answer its result."""
    key = request.headers.get("Idempotency-Key")
    fp = ""
    if key is not None:
        idempotency.check_key(key)
        fp = idempotency.fingerprint(request.method, request.path_qs, await body_of(request))
    answer, replayed = await run_write(request.app[STATE], call_of(request), op, status, key, fp)
    response = web.Response(status=answer.status, body=answer.body or None)
    if answer.body:
        response.content_type = "application/json"
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def require_query(request: web.Request, name: str, max_len: int) -> str:
    """Return a required, non-empty query parameter; raise 400 otherwise."""
    value = request.query.get(name, "").strip()
    if not value or len(value) > max_len:
        raise bad_request(f"{name} is required (1..{max_len} characters)", f"invalid_{name}")
    return value

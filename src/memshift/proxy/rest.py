"""The REST codec: where a REST request's ids and body are, and how a REST answer is made.

A request matching a configured route becomes a ``RestCall`` for the read or write
path; ids sit in the path (``{kind}`` segments), the query (``query_ids``) and the
JSON body (``request_ids``), and in the answer (``response_ids``). Requests sent to the
new store have their ids translated; its answers have theirs translated back, so a
client only ever sees legacy's ids. A request matching no route goes to the primary
alone (``unrouted``), never mirrored, and is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict

from memshift.config.settings import RouteSpec, Settings, StoreName
from memshift.control.plane import ControlPlane
from memshift.jsonpath import document_of
from memshift.links.stores import StoreLinks
from memshift.links.wire import OutboundRequest, UpstreamResponse
from memshift.proxy.call import Reply
from memshift.proxy.headers import SERVED_BY, inbound, with_header
from memshift.proxy.metrics import ProxyMetrics, method_label
from memshift.shadow.mirror import Write
from memshift.shadow.reads import ReadCopy
from memshift.shadow.records import Records, records_of
from memshift.shadow.routes import RouteMatch
from memshift.shadow.translate import Translator
from memshift.webutil import error_response

log = structlog.get_logger("memshift.proxy")

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class RestParts:
    """What every REST call needs of the proxy instance."""

    settings: Callable[[], Settings]
    links: StoreLinks
    translator: Translator


class RestCall:
    """One REST request matching a configured route."""

    def __init__(
        self,
        parts: RestParts,
        request: web.Request,
        body: bytes,
        rid: str,
        match: RouteMatch,
        headers: list[tuple[str, str]],
    ) -> None:
        self.parts = parts
        self.request = request
        self.body = body
        self.rid = rid
        self.match = match
        self.spec: RouteSpec = match.spec
        self.headers = headers
        self.path_qs = request.rel_url.raw_path_qs
        self.answered: tuple[int, bytes] | None = None
        self._records: Records | None = None

    @property
    def route(self) -> str:
        return self.spec.name

    @property
    def is_write(self) -> bool:
        """Whether the method changes the store."""
        return self.request.method in WRITES

    @property
    def sticky(self) -> str:
        sticky_header = self.parts.settings().routing.sticky_header
        return self.request.headers.get(sticky_header) or (self.request.remote or "")

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    @property
    def client_key(self) -> str | None:
        return self.request.headers.get("Idempotency-Key")

    def records(self) -> Records:
        if self._records is None:  # found once (not a cached_property: it takes a lock)
            doc = document_of(self.body) if self.body else None
            self._records = records_of(self.match, doc, self.parts.settings().forms)
        return self._records

    def write(self, key: str, user: str) -> Write:
        return Write(self.match, self.request.method, self.path_qs, self.body, key, user, self.rid)

    async def send(self, store: StoreName, purpose: str, key: str | None = None) -> Reply | None:
        if store == "legacy":  # client ids are legacy's
            path_qs, body = self.path_qs, self.body
        else:
            target = await self.parts.translator.request(self.match, self.path_qs, self.body, store)
            if target is None:
                return None
            path_qs, body = target
        headers = with_header(self.headers, "Idempotency-Key", key) if key else self.headers
        request = OutboundRequest(self.request.method, path_qs, tuple(headers), body)
        answer = await self.parts.links.send(store, request, self.route, purpose)
        return Reply(answer.status, answer.status, answer.body, answer)

    async def respond(
        self, store: StoreName, reply: Reply, *, translate: bool = True
    ) -> web.Response | None:
        upstream: UpstreamResponse = reply.payload
        body = upstream.body
        paths = self.spec.response_ids
        if store != "legacy" and translate and paths and body:
            doc = document_of(body)
            if doc is not None:
                if not await self.parts.translator.document(doc, paths, store, "legacy"):
                    return None
                body = orjson.dumps(doc)
        self.answered = (upstream.status, body)
        return _answer(upstream, body, store)

    async def serve(
        self, store: StoreName, purpose: str, key: str | None = None
    ) -> web.StreamResponse:
        reply = await self.send(store, purpose, key)
        if reply is None:
            return self.refuse(409, "not_migrated", "the record is not in that store yet", store)
        response = await self.respond(store, reply)
        if response is None:
            response = await self.respond(store, reply, translate=False)
            assert response is not None
        return response

    def refuse(self, status: int, code: str, message: str, store: StoreName) -> web.StreamResponse:
        response = error_response(status, code, message)
        response.headers[SERVED_BY] = store
        return response

    def shadow(self, fence: str | None, before: tuple[int, bool], user: str | None) -> ReadCopy:
        return ReadCopy(
            self.match,
            self.request.method,
            self.path_qs,
            self.body,
            tuple(self.headers),
            fence,
            before,
            user,
        )


def _answer(upstream: UpstreamResponse, body: bytes, store: StoreName) -> web.Response:
    headers = CIMultiDict(inbound(upstream.headers))
    headers[SERVED_BY] = store
    return web.Response(status=upstream.status, body=body, headers=headers)


async def unrouted(
    links: StoreLinks,
    plane: ControlPlane,
    metrics: ProxyMetrics,
    request: web.Request,
    body: bytes,
    headers: list[tuple[str, str]],
) -> web.StreamResponse:
    """A request matching no configured route: the primary's alone, never mirrored."""
    primary = plane.state.primary
    metrics.unrouted.labels(method_label(request.method)).inc()
    log.warning("unrouted_request", method=request.method, path=request.path)
    outbound = OutboundRequest(request.method, request.rel_url.raw_path_qs, tuple(headers), body)
    upstream = await links.send(primary, outbound, "unrouted", "unrouted")
    return _answer(upstream, upstream.body, primary)

"""The MCP codec of a tool call: where its ids and body are, and how it is answered.

A ``tools/call`` of a configured read or write tool becomes a ``ToolCall`` for the
read or write path. Its ids sit among the tool's arguments (``id_arguments``) and in
its result document (``result_ids``); the record it changes or reads is its
``record_argument``. A tool call's outcome is seen the way a REST answer is: a status
and a JSON document (``protocol.tool_outcome``).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from memshift.config.settings import RouteSpec, StoreName
from memshift.links.wire import StreamedResponse
from memshift.mcp import protocol
from memshift.proxy.call import Reply
from memshift.proxy.mcp import relay
from memshift.proxy.mcp.exchange import McpRequest, rpc_error
from memshift.shadow.mirror import Write
from memshift.shadow.reads import ReadCopy
from memshift.shadow.records import Records, records_of
from memshift.shadow.routes import RouteMatch

UNANSWERABLE = "the answer names records that are not migrated yet; try again"


class ToolCall:
    """One ``tools/call`` of a configured read or write tool."""

    def __init__(self, mcp: McpRequest, spec: RouteSpec, args: dict[str, Any]) -> None:
        self.mcp = mcp
        self.spec = spec
        self.args = args
        self.rid = mcp.rid
        self.match = RouteMatch(spec, ())
        self.answered: tuple[int, bytes] | None = None
        self._records: Records | None = None

    @property
    def route(self) -> str:
        return self.spec.name

    @property
    def sticky(self) -> str:
        sticky_header = self.mcp.parts.settings().routing.sticky_header
        request = self.mcp.request
        return request.headers.get(sticky_header) or (request.remote or "")

    def header(self, name: str) -> str | None:
        return self.mcp.request.headers.get(name)

    @property
    def client_key(self) -> str | None:
        return self.mcp.request.headers.get("Idempotency-Key")

    def records(self) -> Records:
        if self._records is None:  # found once (not a cached_property: it takes a lock)
            self._records = records_of(self.match, self.args, self.mcp.parts.settings().forms)
        return self._records

    def write(self, key: str, user: str) -> Write:
        args = orjson.dumps(self.args)
        return Write(self.match, protocol.TOOL, self.spec.path, args, key, user, self.rid)

    async def _body_for(self, store: StoreName) -> bytes | None:
        """The request ``store`` must get (ids translated); None when one is unmapped."""
        args = self.args
        if store != "legacy" and self.spec.request_ids:
            args = dict(args)
            translator = self.mcp.parts.translator
            if not await translator.document(args, self.spec.request_ids, "legacy", store):
                return None
        params = {**self.mcp.msg["params"], "arguments": args}
        return self.mcp.wire_body(params)

    async def send(self, store: StoreName, purpose: str, key: str | None = None) -> Reply | None:
        body = await self._body_for(store)
        if body is None:
            return None
        extra = [("Idempotency-Key", key)] if key else []
        mcp = self.mcp
        upstream, content = await mcp.fetch(store, body, purpose, self.route, extra)
        outcome, doc = upstream.status, None
        if upstream.status == 200:
            sse = protocol.is_sse(upstream.headers)
            outcome, doc = protocol.tool_outcome(protocol.response_to(content, sse, mcp.wire_id))
        return Reply(upstream.status, outcome, orjson.dumps(doc), (upstream, content))

    def _translating(self, store: StoreName) -> relay.Rewrite | None:
        """A rewrite translating a tool result's ids from ``store``'s to legacy's."""
        if store == "legacy" or not self.spec.response_ids:
            return None
        translator = self.mcp.parts.translator
        paths = self.spec.response_ids

        async def rewrite(msg: dict[str, Any]) -> dict[str, Any] | None:
            status, doc = protocol.tool_outcome(msg)
            if status != 200 or not isinstance(doc, dict | list):
                return msg
            if not await translator.document(doc, paths, store, "legacy"):
                return None
            msg = dict(msg)
            msg["result"] = protocol.with_result(msg.get("result"), doc)
            return msg

        return rewrite

    async def respond(
        self, store: StoreName, reply: Reply, *, translate: bool = True
    ) -> web.StreamResponse | None:
        upstream: StreamedResponse
        upstream, content = reply.payload
        rewrite = self._translating(store) if translate else None
        response, final = await relay.whole(self.mcp, store, upstream, content, rewrite)
        if response is None:
            return None
        self._answered(final)
        return response

    async def serve(
        self, store: StoreName, purpose: str, key: str | None = None
    ) -> web.StreamResponse:
        if store != "legacy":  # its answer must be translated: read whole first
            reply = await self.send(store, purpose, key)
            if reply is None:
                return self.refuse(409, "not_migrated", "an id has no pair in that store", store)
            response = await self.respond(store, reply)
            if response is None:
                return rpc_error(self.mcp.msg_id, 200, -32603, UNANSWERABLE, store)
            return response
        body = await self._body_for(store)
        assert body is not None, "legacy needs no translation"
        extra = [("Idempotency-Key", key)] if key else []
        async with self.mcp.open(store, body, purpose, self.route, extra) as upstream:
            streamed, final = await relay.stream(self.mcp, store, upstream)
        self._answered(final)
        return streamed

    def _answered(self, final: dict[str, Any] | None) -> None:
        if final is not None:
            status, doc = protocol.tool_outcome(final)
            self.answered = (status, orjson.dumps(doc))

    def refuse(self, status: int, code: str, message: str, store: StoreName) -> web.StreamResponse:
        return rpc_error(self.mcp.msg_id, status, -32603, message, store)

    def shadow(self, fence: str | None, before: tuple[int, bool], user: str | None) -> ReadCopy:
        args = orjson.dumps(self.args)
        headers = tuple(self.mcp.headers)
        return ReadCopy(
            self.match, protocol.TOOL, self.spec.path, args, headers, fence, before, user
        )

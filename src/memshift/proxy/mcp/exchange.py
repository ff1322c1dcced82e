"""One client request to the MCP endpoint, as it is sent on to a store.

A store gets the client's request in the client's own session with that store (opened
from the client's ``initialize`` when there is none, or when the store forgot it: a
404 re-opens it once, unseen by the client), with that store's negotiated version and
its own ``Origin``. The JSON-RPC id a store sees is memshift's own, unique per
request: two concurrent calls of one client that reuse an id never get each other's
answers; the client's id is put back on the way out (``relay.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import structlog
from aiohttp import web
from yarl import URL

from memshift.config.settings import Settings, StoreName
from memshift.control.plane import ControlPlane
from memshift.errors import NotSent
from memshift.links.mcp import StoreSession, open_session
from memshift.links.stores import StoreLinks
from memshift.links.wire import OutboundRequest, StreamedResponse
from memshift.mcp import protocol
from memshift.proxy.headers import SERVED_BY, fresh_id, with_header
from memshift.proxy.mcp.sessions import ClientSession, Sessions
from memshift.proxy.metrics import ProxyMetrics
from memshift.shadow.translate import Translator

log = structlog.get_logger("memshift.proxy")

_SESSION_LOWER = protocol.SESSION_HEADER.lower()
_VERSION_LOWER = protocol.VERSION_HEADER.lower()


@dataclass(frozen=True)
class McpParts:
    """What every MCP request needs of the proxy instance."""

    settings: Callable[[], Settings]
    links: StoreLinks
    translator: Translator
    sessions: Sessions
    plane: ControlPlane
    metrics: ProxyMetrics


@dataclass
class McpRequest:
    """One client request to the MCP endpoint on its way through the proxy."""

    parts: McpParts
    request: web.Request
    body: bytes
    msg: Any
    headers: list[tuple[str, str]]
    rid: str
    session: ClientSession | None = None
    wire_id: str = field(default_factory=lambda: f"memshift-{fresh_id()}")

    @property
    def msg_id(self) -> Any:
        """The client's JSON-RPC id (None for a notification or no message)."""
        return self.msg.get("id") if isinstance(self.msg, dict) else None

    @property
    def path(self) -> str:
        return self.parts.settings().mcp.path

    def wire_body(self, params: dict[str, Any] | None = None) -> bytes:
        """The request as a store gets it: memshift's id, and ``params`` if given."""
        if not isinstance(self.msg, dict) or "id" not in self.msg:
            return self.body if params is None else orjson.dumps({**self.msg, "params": params})
        out = {**self.msg, "id": self.wire_id}
        if params is not None:
            out["params"] = params
        return orjson.dumps(out)

    def caller_headers(self) -> list[tuple[str, str]]:
        """The headers that say who calls: what a store needs to open a session."""
        return [(k, v) for k, v in self.headers if k.lower() in ("authorization", "x-request-id")]

    def store_headers(
        self, store: StoreName, session: StoreSession | None
    ) -> list[tuple[str, str]]:
        """The client's headers as ``store`` must get them: its session, version, origin."""
        out = [(k, v) for k, v in self.headers if k.lower() not in (_SESSION_LOWER, _VERSION_LOWER)]
        if any(k.lower() == "origin" for k, _ in out):
            url = URL(self.parts.settings().stores[store].url)
            out = with_header(out, "Origin", str(url.origin()))
        version = self.request.headers.get(protocol.VERSION_HEADER)
        if session is not None:
            version = session.version
            if session.id:
                out.append((protocol.SESSION_HEADER, session.id))
        if version:
            out.append((protocol.VERSION_HEADER, version))
        return out

    async def store_session(
        self, store: StoreName, stale: StoreSession | None = None
    ) -> StoreSession | None:
        """Return this client's session with ``store``, opening it when there is none.

        ``stale`` is a session the store answered 404 for: it is replaced.
        """
        session = self.session
        if session is None:
            return None
        async with session.locks[store]:
            current = session.stores.get(store)
            if current is not None and current != stale:
                return current
            links = self.parts.links
            opened, _answer = await open_session(
                lambda r: links.send(store, r, "mcp:initialize", "session"),
                self.path,
                self.caller_headers(),
                session.init,
                notify=True,
            )
            session.stores[store] = opened
            await self.parts.sessions.changed(session)
            log.info("mcp_store_session_opened", store=store, renewed=stale is not None)
            return opened

    @asynccontextmanager
    async def open(
        self,
        store: StoreName,
        body: bytes,
        purpose: str,
        route: str,
        extra: list[tuple[str, str]] | None = None,
        idle_s: float | None = None,
    ) -> AsyncIterator[StreamedResponse]:
        """Send ``body`` to ``store`` in this client's session; re-open it once on 404.

        The answer's body is read while the context is open.
        """
        for attempt in (1, 2):
            session = await self.store_session(store) if self.session is not None else None
            if self.session is not None and session is None:
                raise NotSent(store, "refused to open an MCP session")
            headers = self.store_headers(store, session) + (extra or [])
            request = OutboundRequest(
                self.request.method, self.path, tuple(headers), body, idle_s=idle_s
            )
            async with self.parts.links.stream(store, request, route, purpose) as answer:
                expired = answer.status == 404 and session is not None and bool(session.id)
                if not expired or attempt == 2:
                    yield answer
                    return
            log.info("mcp_store_session_expired", store=store)
            await self.store_session(store, stale=session)

    async def fetch(
        self,
        store: StoreName,
        body: bytes,
        purpose: str,
        route: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> tuple[StreamedResponse, bytes]:
        """Send ``body`` to ``store`` and read its whole answer."""
        async with self.open(store, body, purpose, route, extra) as answer:
            return answer, b"".join([chunk async for chunk in answer.chunks])


def rpc_error(
    msg_id: Any, status: int, code: int, message: str, store: str | None = None
) -> web.Response:
    """Return a JSON-RPC error answer (memshift's own, never a traceback)."""
    body = {"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}}
    response = web.Response(status=status, body=orjson.dumps(body), content_type="application/json")
    if store:
        response.headers[SERVED_BY] = store
    return response

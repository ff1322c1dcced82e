"""memshift's own MCP session with one store, for the tool calls it makes itself.

Mirrored writes, replayed writes and shadow reads of tool calls are sent here as
``TOOL`` requests (the tool's name in the path, its arguments as the body, the
caller's headers). The link opens a session with the store when it needs one
(``initialize``, then ``notifications/initialized``), sends the call on it, opens a
new one when the store forgot the old one (404), and turns the JSON-RPC answer, JSON
or SSE, into a status and a document (``protocol.tool_outcome``).

Which user a call runs as is decided per request by its ``Authorization`` and
``X-Act-As`` headers, as for REST; the session only carries the protocol state.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import structlog

from memshift.config.settings import StoreName
from memshift.links.wire import OutboundRequest, UpstreamResponse, header
from memshift.mcp import protocol

log = structlog.get_logger("memshift.mcp")

RawSend = Callable[[OutboundRequest], Awaitable[UpstreamResponse]]
_CALLER_HEADERS = ("authorization", "x-act-as", "idempotency-key", "x-request-id")


@dataclass(frozen=True)
class StoreSession:
    """A session with a store: its id (None for a store without sessions) and version."""

    id: str | None
    version: str


async def open_session(
    send: RawSend,
    path: str,
    headers: list[tuple[str, str]],
    init: dict[str, object],
    notify: bool = True,
) -> tuple[StoreSession | None, UpstreamResponse]:
    """Initialize a session with ``init``; None (and the answer) when the store refused.

    ``notify`` sends ``notifications/initialized`` right away; without it, the client's
    own is forwarded when it comes.
    """
    body = orjson.dumps(init)
    base = [*headers, ("Content-Type", "application/json"), ("Accept", protocol.ACCEPT)]
    answer = await send(OutboundRequest("POST", path, tuple(base), body))
    if answer.status != 200:
        return None, answer
    response = protocol.response_to(answer.body, protocol.is_sse(answer.headers), init.get("id"))
    result = response.get("result") if response else None
    if not isinstance(result, dict) or not isinstance(result.get("protocolVersion"), str):
        return None, answer
    session = StoreSession(
        header(answer.headers, protocol.SESSION_HEADER), result["protocolVersion"]
    )
    if not notify:
        return session, answer
    follow = list(base)
    if session.id:
        follow.append((protocol.SESSION_HEADER, session.id))
    follow.append((protocol.VERSION_HEADER, session.version))
    await send(OutboundRequest("POST", path, tuple(follow), orjson.dumps(protocol.INITIALIZED)))
    return session, answer


class McpLink:
    """One store's MCP endpoint as memshift itself uses it."""

    def __init__(self, store: StoreName, path: Callable[[], str], send: RawSend) -> None:
        self.store = store
        self.path = path
        self.send = send
        self._session: StoreSession | None = None
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    async def _ensure(self, headers: list[tuple[str, str]]) -> StoreSession | UpstreamResponse:
        async with self._lock:
            if self._session is None:
                init = protocol.initialize_request(f"memshift-init-{next(self._ids)}")
                session, answer = await open_session(self.send, self.path(), headers, init)
                if session is None:
                    return answer
                self._session = session
                log.info("mcp_link_opened", store=self.store, version=session.version)
            return self._session

    async def call(self, request: OutboundRequest) -> UpstreamResponse:
        """Call the tool named by ``request``'s path; answer with its status and document."""
        name = request.path_qs.rsplit("/", 1)[-1]
        args = protocol.loads(request.body)
        headers = [(k, v) for k, v in request.headers if k.lower() in _CALLER_HEADERS]
        for attempt in (1, 2):
            session = await self._ensure(headers)
            if isinstance(session, UpstreamResponse):
                return session  # the store refused the session: its status tells why
            rid = f"memshift-{next(self._ids)}"
            msg = {
                "jsonrpc": "2.0",
                "id": rid,
                "method": "tools/call",
                "params": {"name": name, "arguments": args if isinstance(args, dict) else {}},
            }
            sent = [
                *headers,
                ("Content-Type", "application/json"),
                ("Accept", protocol.ACCEPT),
                (protocol.VERSION_HEADER, session.version),
            ]
            if session.id:
                sent.append((protocol.SESSION_HEADER, session.id))
            answer = await self.send(
                OutboundRequest("POST", self.path(), tuple(sent), orjson.dumps(msg))
            )
            if answer.status == 404 and session.id and attempt == 1:
                async with self._lock:
                    if self._session == session:
                        self._session = None  # the store forgot it: open another
                log.info("mcp_link_expired", store=self.store)
                continue
            if answer.status != 200:
                return answer
            response = protocol.response_to(answer.body, protocol.is_sse(answer.headers), rid)
            status, doc = protocol.tool_outcome(response)
            return UpstreamResponse(
                status, (("Content-Type", "application/json"),), orjson.dumps(doc), answer.elapsed_s
            )
        raise AssertionError("unreachable: the second attempt returns")

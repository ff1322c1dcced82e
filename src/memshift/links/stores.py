"""Both stores as one process reaches them: a link each, and one observer of every exchange.

A store's link is how it is reached (its HTTP client, ``http.py``, or the child it runs
on stdio, ``stdio.py``) and memshift's own MCP session on it (``mcp.py``, for the tool
calls memshift makes itself). Every exchange with a store,
whole or streamed, goes through ``StoreLinks.send`` or ``StoreLinks.stream`` and is
reported once to the observer given at construction (the proxy's health windows and
metrics; the shadow helper's report to the proxy), with its status, or the
``UpstreamError`` that left it unanswered.

When a reloaded config file changes a store's endpoint, a new link takes over at once
and the old one is closed a minute later, once the requests it carries are done.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, NamedTuple, Protocol

from yarl import URL

from memshift.config.settings import STORE_NAMES, Settings, StoreEndpoint, StoreName
from memshift.errors import UpstreamError
from memshift.links import clock
from memshift.links.http import HttpLink
from memshift.links.mcp import McpLink
from memshift.links.stdio import StdioStore
from memshift.links.wire import OutboundRequest, StreamedResponse, UpstreamResponse
from memshift.mcp.protocol import TOOL

RETIRE_AFTER_S = 60.0
Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class Exchange(NamedTuple):
    """One exchange with a store, as its observer is told of it."""

    store: StoreName
    route: str  # the configured route or tool, or memshift's own name for the request
    purpose: str  # read, write, mirror, shadow, replay, session, identity...
    status: int | None  # None: the store left it unanswered
    elapsed_s: float
    timeout: bool  # unanswered because the store was too slow
    size: int = 0  # the request body's bytes


Observer = Callable[[Exchange], None]


def target(path_qs: str) -> str:
    """The request target of ``path_qs``: an absolute path, never another host.

    A path such as ``//elsewhere/x`` stays a path on the store.
    """
    return "/" + path_qs.lstrip("/")


class Transport(Protocol):
    """How a store is reached: requests by path, answered whole or streamed."""

    async def request(self, request: OutboundRequest) -> UpstreamResponse: ...

    def stream(
        self, request: OutboundRequest
    ) -> contextlib.AbstractAsyncContextManager[StreamedResponse]: ...

    async def close(self) -> None: ...


class HttpTransport:
    """A store over HTTP: its lean client (``http.py``)."""

    def __init__(self, endpoint: StoreEndpoint) -> None:
        base = URL(endpoint.url)
        self.http = HttpLink(
            endpoint.name,
            base.scheme,
            base.raw_host or "",
            base.port or 80,
            connect_timeout_s=endpoint.connect_timeout_s,
            read_timeout_s=endpoint.read_timeout_s,
        )

    async def request(self, request: OutboundRequest) -> UpstreamResponse:
        """Send an HTTP request and return the whole answer; raise ``UpstreamError``."""
        started = clock.now()
        answer = await self.http.request(
            request.method, target(request.path_qs), request.headers, request.body
        )
        return UpstreamResponse(
            answer.status, tuple(answer.headers), answer.body, answer.done_at - started
        )

    @asynccontextmanager
    async def stream(self, request: OutboundRequest) -> AsyncIterator[StreamedResponse]:
        """Send an HTTP request; its answer's body is read while the context is open."""
        started = clock.now()
        async with self.http.stream(
            request.method,
            target(request.path_qs),
            request.headers,
            request.body,
            idle_s=request.idle_s,
        ) as answer:
            yield StreamedResponse(
                answer.status, tuple(answer.headers), answer.chunks, clock.now() - started
            )

    async def close(self) -> None:
        """Release connections."""
        self.http.close()


class StoreLink:
    """One store: how it is reached (HTTP, or a child on stdio) and memshift's own MCP
    session on it, for the tool calls memshift makes itself."""

    def __init__(self, endpoint: StoreEndpoint, mcp_path: Callable[[], str], spawn: Spawn) -> None:
        self.name: StoreName = endpoint.name
        self.endpoint = endpoint
        self.transport: Transport = (
            StdioStore(endpoint, mcp_path, spawn) if endpoint.command else HttpTransport(endpoint)
        )
        self.mcp = McpLink(endpoint.name, mcp_path, self.transport.request)

    async def request(self, request: OutboundRequest) -> UpstreamResponse:
        """Send a request and return the whole answer; raise ``UpstreamError``."""
        return await self.transport.request(request)

    def send(self, request: OutboundRequest) -> Awaitable[UpstreamResponse]:
        """Send ``request``: a tool call (method ``TOOL``) through the MCP session.

        The transport's own coroutine, not one around it: one frame fewer to resume
        on every wake of an exchange.
        """
        if request.method == TOOL:
            return self.mcp.call(request)
        return self.transport.request(request)

    def stream(
        self, request: OutboundRequest
    ) -> contextlib.AbstractAsyncContextManager[StreamedResponse]:
        """Send a request; its answer's body is read while the context is open."""
        return self.transport.stream(request)

    async def close(self) -> None:
        """Release connections, or stop the child."""
        await self.transport.close()


class StoreLinks:
    """Both stores' links, following config reloads, every exchange observed."""

    def __init__(self, settings: Callable[[], Settings], spawn: Spawn, observe: Observer) -> None:
        self._settings = settings
        self._spawn = spawn
        self._observe = observe
        self.links: dict[StoreName, StoreLink] = {
            name: self._link(settings().stores[name]) for name in STORE_NAMES
        }
        self._retiring: set[StoreLink] = set()

    def _link(self, endpoint: StoreEndpoint) -> StoreLink:
        return StoreLink(endpoint, lambda: self._settings().mcp.path, self._spawn)

    async def send(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str
    ) -> UpstreamResponse:
        """Send ``request`` to ``store`` (a tool call through its MCP session); raise
        ``UpstreamError``. ``route`` and ``purpose`` label the exchange for the observer."""
        size = len(request.body)
        try:
            answer = await self.links[store].send(request)
        except UpstreamError as exc:
            self._observe(Exchange(store, route, purpose, None, 0.0, exc.timeout, size))
            raise
        self._observe(Exchange(store, route, purpose, answer.status, answer.elapsed_s, False, size))
        return answer

    @asynccontextmanager
    async def stream(
        self, store: StoreName, request: OutboundRequest, route: str, purpose: str
    ) -> AsyncIterator[StreamedResponse]:
        """Send ``request`` to ``store``; its body is read while the context is open."""
        size = len(request.body)
        async with AsyncExitStack() as stack:
            try:
                answer = await stack.enter_async_context(self.links[store].stream(request))
            except UpstreamError as exc:
                self._observe(Exchange(store, route, purpose, None, 0.0, exc.timeout, size))
                raise
            self._observe(
                Exchange(store, route, purpose, answer.status, answer.elapsed_s, False, size)
            )
            yield answer

    def follow(self, settings: Settings, changed: frozenset[str]) -> None:
        """Take a reloaded config: a store whose endpoint changed gets a new link."""
        for name in STORE_NAMES:
            if any(k.startswith(f"stores.{name}.") and not k.endswith(".token") for k in changed):
                old = self.links[name]
                self.links[name] = self._link(settings.stores[name])
                self._retiring.add(old)
                self._spawn(self._retire(old), f"retire-{name}")

    async def _retire(self, link: StoreLink) -> None:
        """Close a replaced link once its requests are done."""
        await asyncio.sleep(RETIRE_AFTER_S)
        self._retiring.discard(link)
        await link.close()

    async def close(self) -> None:
        """Close every link, the replaced ones included."""
        for link in [*self.links.values(), *self._retiring]:
            await link.close()

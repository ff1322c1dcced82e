"""The two stores as one process reaches them: an HTTP connection pool and an MCP link each.

The proxy and its shadow helper each hold one. When a reloaded config file changes a
store's endpoint, a new pool takes over at once and the old one is closed a minute
later, once the requests it carries are done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any

from memshift.config.settings import STORE_NAMES, Settings, StoreName
from memshift.mcp import protocol
from memshift.mcp.link import StoreLink
from memshift.upstream import (
    HttpUpstream,
    OutboundRequest,
    StreamedResponse,
    Upstream,
    UpstreamResponse,
)

RETIRE_AFTER_S = 60.0
Spawn = Callable[[Coroutine[Any, Any, None], str], object]


class Stores:
    """Both stores' connection pools and MCP links, following config reloads."""

    def __init__(
        self,
        settings: Callable[[], Settings],
        spawn: Spawn,
        upstreams: dict[StoreName, Upstream] | None = None,
    ) -> None:
        self._spawn = spawn
        self.upstreams: dict[StoreName, Upstream] = upstreams or {
            name: HttpUpstream(settings().stores[name]) for name in STORE_NAMES
        }
        self.links = {name: self._link(name, settings) for name in STORE_NAMES}
        self._retiring: set[Upstream] = set()

    def _link(self, name: StoreName, settings: Callable[[], Settings]) -> StoreLink:
        return StoreLink(
            name, lambda: settings().mcp.path, lambda request: self.upstreams[name].send(request)
        )

    async def send(self, store: StoreName, request: OutboundRequest) -> UpstreamResponse:
        """Send ``request`` to ``store``: a tool call (``protocol.TOOL``) through its link."""
        if request.method == protocol.TOOL:
            return await self.links[store].call(request)
        return await self.upstreams[store].send(request)

    def stream(
        self, store: StoreName, request: OutboundRequest
    ) -> AbstractAsyncContextManager[StreamedResponse]:
        """Send ``request`` to ``store``; its body is read while the context is open."""
        return self.upstreams[store].stream(request)

    def follow(self, settings: Settings, changed: frozenset[str]) -> None:
        """Take a reloaded config: a store whose endpoint changed gets a new pool."""
        for name in STORE_NAMES:
            if any(k.startswith(f"stores.{name}.") and not k.endswith(".token") for k in changed):
                old = self.upstreams[name]
                self.upstreams[name] = HttpUpstream(settings.stores[name])
                self._retiring.add(old)
                self._spawn(self._retire(old), f"retire-{name}")

    async def _retire(self, upstream: Upstream) -> None:
        """Close a replaced connection pool once its requests are done."""
        await asyncio.sleep(RETIRE_AFTER_S)
        self._retiring.discard(upstream)
        await upstream.close()

    async def close(self) -> None:
        """Close every pool, the replaced ones included."""
        for upstream in [*self.upstreams.values(), *self._retiring]:
            await upstream.close()

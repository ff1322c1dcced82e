"""The network edge towards a store: ``Upstream.send(request) -> UpstreamResponse``.

``HttpUpstream`` speaks HTTP with a keep-alive ``ClientSession`` and the store's own
timeouts, and turns every aiohttp failure into ``UpstreamError`` (``timeout`` set for
timeouts), once, here. ``FunctionUpstream`` is its in-memory twin for fault injection
in tests: it answers through a plain function.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from yarl import URL

from memshift.config.settings import StoreEndpoint, StoreName
from memshift.errors import UpstreamError
from memshift.httpclient import HttpFailure, HttpPool


@dataclass(frozen=True)
class OutboundRequest:
    """What is sent to a store: never an absolute URL, only a path under its base URL."""

    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class UpstreamResponse:
    """A store's whole answer, and how long it took."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    elapsed_s: float


@dataclass(frozen=True)
class StreamedResponse:
    """A store's answer whose body is read as it arrives (an SSE stream, say)."""

    status: int
    headers: tuple[tuple[str, str], ...]
    chunks: AsyncIterator[bytes]
    elapsed_s: float


class Upstream(Protocol):
    """One store, as the proxy reaches it."""

    name: StoreName

    async def send(self, request: OutboundRequest) -> UpstreamResponse:
        """Send ``request``; raise ``UpstreamError`` when no answer comes."""

    def stream(self, request: OutboundRequest) -> AbstractAsyncContextManager[StreamedResponse]:
        """Send ``request``; the body is read while the context is open."""

    async def close(self) -> None:
        """Release connections."""


class HttpUpstream:
    """A store over HTTP, with keep-alive connections and the store's timeouts."""

    def __init__(self, endpoint: StoreEndpoint) -> None:
        self.name: StoreName = endpoint.name
        self.endpoint = endpoint
        self._base = URL(endpoint.url)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=endpoint.connect_timeout_s,
                sock_read=endpoint.read_timeout_s,
            ),
            connector=aiohttp.TCPConnector(limit=512, keepalive_timeout=30),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # A store's cookies belong to the client that caused them, never to the
            # next caller on this shared session: the proxy keeps none.
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._pool = HttpPool(
            self._base.scheme,
            self._base.raw_host or "",
            self._base.port or 80,
            connect_timeout_s=endpoint.connect_timeout_s,
            read_timeout_s=endpoint.read_timeout_s,
        )

    def url(self, path_qs: str) -> URL:
        """Return the absolute URL of ``path_qs`` on this store, whatever the path says.

        The URL is built from the configured scheme, host and port, never joined, so a
        path such as ``//elsewhere/x`` cannot name another host.
        """
        path, _, query = self.target(path_qs).partition("?")
        return URL.build(
            scheme=self._base.scheme,
            host=self._base.raw_host or "",
            port=self._base.explicit_port,
            path=path,
            query_string=query,
            encoded=True,
        )

    @contextmanager
    def _store_failures(self) -> Iterator[None]:
        """Turn aiohttp's failures while talking to the store into ``UpstreamError``."""
        try:
            yield
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamError(self.name, "timed out", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(self.name, f"unreachable: {type(exc).__name__}") from exc

    async def _open(self, request: OutboundRequest) -> aiohttp.ClientResponse:
        with self._store_failures():
            return await self._session.request(
                request.method,
                self.url(request.path_qs),
                headers=request.headers,
                data=request.body or None,
                allow_redirects=False,
            )

    def target(self, path_qs: str) -> str:
        """The request target of ``path_qs``: an absolute path, never another host."""
        return "/" + path_qs.lstrip("/")

    async def send(self, request: OutboundRequest) -> UpstreamResponse:
        started = time.perf_counter()
        try:
            answer = await self._pool.request(
                request.method, self.target(request.path_qs), request.headers, request.body
            )
        except HttpFailure as exc:
            message = "timed out" if exc.timeout else f"unreachable: {exc}"
            raise UpstreamError(self.name, message, timeout=exc.timeout) from exc
        return UpstreamResponse(
            answer.status, tuple(answer.headers), answer.body, time.perf_counter() - started
        )

    @asynccontextmanager
    async def stream(self, request: OutboundRequest) -> AsyncIterator[StreamedResponse]:
        """Only the store's failures become ``UpstreamError``: what the caller does
        with the answer (writing it to a client that went away) stays the caller's."""
        started = time.perf_counter()
        resp = await self._open(request)
        try:
            yield StreamedResponse(
                resp.status,
                tuple(resp.headers.items()),
                self._chunks(resp),
                time.perf_counter() - started,
            )
        finally:
            resp.release()

    async def _chunks(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        with self._store_failures():
            async for chunk in resp.content.iter_any():
                yield chunk

    async def close(self) -> None:
        self._pool.close()
        await self._session.close()


Handler = Callable[[OutboundRequest], Awaitable[UpstreamResponse]]


class FunctionUpstream:
    """An in-memory store for fault injection: ``handler`` makes each answer."""

    def __init__(self, name: StoreName, handler: Handler) -> None:
        self.name: StoreName = name
        self.handler = handler
        self.requests: list[OutboundRequest] = []

    async def send(self, request: OutboundRequest) -> UpstreamResponse:
        self.requests.append(request)
        await asyncio.sleep(0)
        return await self.handler(request)

    @asynccontextmanager
    async def stream(self, request: OutboundRequest) -> AsyncIterator[StreamedResponse]:
        answer = await self.send(request)

        async def chunks() -> AsyncIterator[bytes]:
            yield answer.body

        yield StreamedResponse(answer.status, answer.headers, chunks(), answer.elapsed_s)

    async def close(self) -> None:
        return None

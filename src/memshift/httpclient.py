"""A lean HTTP/1.1 client for whole answers from a store, over kept-alive connections.

Every client request costs the proxy at least one request to a store, so that
request is the proxy's largest cost. aiohttp's client is general (cookies,
redirects, tracing, proxies, compression); this one does only what the proxy needs:
one request at a time per connection, the answer read whole, connections kept for
the next request. Parsing is llhttp's, through httptools. Streamed answers (MCP's
SSE) still go through aiohttp.

Store requests ask for an uncompressed answer (``Accept-Encoding: identity``), so
that ids in bodies can be read and the answer passed on as it is.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import httptools

Headers = list[tuple[str, str]]
HeaderItems = Sequence[tuple[str, str]]
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers this client writes itself.
_SET_HERE = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection", "expect"}
)


class HttpFailure(Exception):
    """The store could not be reached, or broke off its answer; ``timeout`` if it was late."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True)
class Answer:
    """A store's whole answer."""

    status: int
    headers: Headers
    body: bytes


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its answer parsed as it comes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._status = 0
        self._complete = False
        self._head_only = False
        self.keep_alive = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpFailure(f"bad answer: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(
                HttpFailure("connection closed before the answer was complete")
            )

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if self._head_only:
            self._done()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._done()

    def _done(self) -> None:
        self._complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, failure: HttpFailure) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(failure)

    def close(self) -> None:
        """Close the connection; it is not used again."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, request: bytes, head_only: bool, timeout_s: float) -> Answer:
        """Send ``request`` and return the whole answer; fail after ``timeout_s``."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._complete = [], [], False
        self._head_only = head_only
        timer = loop.call_later(timeout_s, self._late)
        try:
            self.transport.write(request)
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None
            self._parser = None
        return Answer(self._status, self._headers, b"".join(self._body))

    def _late(self) -> None:
        self._fail(HttpFailure("timed out", timeout=True))
        self.close()


class HttpPool:
    """Kept-alive connections to one ``scheme://host:port``."""

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        limit: int = 512,
    ) -> None:
        self.host, self.port = host, port
        self.host_header = (
            host if (scheme, port) in (("http", 80), ("https", 443)) else (f"{host}:{port}")
        )
        self.ssl = ssl.create_default_context() if scheme == "https" else None
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(limit)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise HttpFailure("connect timed out", timeout=True) from None
        except OSError as exc:
            raise HttpFailure(f"cannot connect: {exc.strerror or exc}") from None
        return conn

    def _head(self, method: str, path_qs: str, headers: HeaderItems, length: int) -> bytes:
        if any(c in path_qs for c in " \r\n\t"):
            raise HttpFailure("the request target holds white space")
        lines = [f"{method} {path_qs} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        for name, value in headers:
            if name.lower() in _SET_HERE:
                continue
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise HttpFailure(f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Accept-Encoding: identity\r\nContent-Length: {length}\r\n\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape")

    async def request(self, method: str, path_qs: str, headers: HeaderItems, body: bytes) -> Answer:
        """Send one request and return its whole answer; raise ``HttpFailure``."""
        wire = self._head(method, path_qs, headers, len(body)) + body
        head_only = method == "HEAD"
        async with self._slots:
            while self._idle:
                conn = self._idle.pop()
                if conn.closed:
                    continue
                try:
                    answer = await conn.exchange(wire, head_only, self.read_timeout_s)
                except HttpFailure as exc:
                    conn.close()
                    # A kept connection the store had just closed: the request never
                    # reached it. Only a request that changes nothing is sent again.
                    if exc.timeout or method not in _SAFE:
                        raise
                    continue
                except BaseException:  # cancelled: the answer may still come; not reusable
                    conn.close()
                    raise
                self._keep(conn)
                return answer
            conn = await self._connect()
            try:
                answer = await conn.exchange(wire, head_only, self.read_timeout_s)
            except BaseException:
                conn.close()
                raise
            self._keep(conn)
            return answer

    def _keep(self, conn: _Connection) -> None:
        if conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every kept connection."""
        while self._idle:
            self._idle.pop().close()

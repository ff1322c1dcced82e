"""One HTTP/1.1 client per store: whole answers and streamed ones, one failure taxonomy.

Every client request costs the proxy at least one request to a store, so that request
is the proxy's largest cost. A general client (cookies, redirects, tracing, proxies)
costs more than the store's answer; this one does only what the proxy needs: one
request at a time per kept-alive connection, llhttp's parser (through httptools),
the answer read whole (``request``) or chunk by chunk as it arrives (``stream``, for
MCP's SSE).

Failures are mapped here, once, for both kinds of answer:

- ``NotSent``: the connection was refused, or not made within ``connect_timeout_s``,
  or a kept connection was found closed before the request was written;
- ``OutcomeUnknown``: the request was written and no whole answer came: the
  connection was lost mid-answer, the store stayed silent longer than
  ``read_timeout_s`` (waiting for the status line or between two chunks of the
  answer), or the answer could not be parsed.

``read_timeout_s`` means the same for both kinds of answer: the longest silence of a
store that owes bytes. A kept connection is not used past the store's own
``Keep-Alive: timeout`` (nor past ``IDLE_S``), so a store closing an idle connection
rarely races a write onto it.

Store requests ask for an uncompressed answer (``Accept-Encoding: identity``); a store
that compresses anyway (gzip, deflate) has its answer decoded here, so that ids in
bodies can be read and the answer passed on as it is.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import httptools

from memshift.errors import NotSent, OutcomeUnknown, UpstreamError

Headers = list[tuple[str, str]]
HeaderItems = Sequence[tuple[str, str]]
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers this client writes itself.
_SET_HERE = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection", "expect"}
)
IDLE_S = 30.0  # the longest a connection is kept unused, whatever the store says
_KEEP_ALIVE_TIMEOUT = re.compile(r"timeout\s*=\s*(\d+)", re.IGNORECASE)
HIGH_WATER = 1024 * 1024  # a streamed answer buffered past this pauses the socket
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class Answer:
    """A store's whole answer."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class Streamed:
    """A store's answer whose body is read as it arrives."""

    status: int
    headers: Headers
    chunks: AsyncIterator[bytes]


class _Failure(Exception):
    """Raised inside a connection; the link turns it into the store's ``UpstreamError``."""

    def __init__(self, message: str, *, sent: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.timeout = timeout


class _Connection(asyncio.Protocol):
    """One kept-alive connection: one request at a time, its answer parsed as it comes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_until = 0.0  # loop time after which a kept connection is not used
        self.keep_alive = False
        self._loop = asyncio.get_running_loop()
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None  # resolved with the headers
        self._end: asyncio.Future[None] | None = None  # resolved with the whole answer
        self._status = 0
        self._headers: Headers = []
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._streaming = False
        self._paused = False
        self._wake: asyncio.Future[None] | None = None  # a streaming reader waiting
        self._decoder: zlib._Decompress | None = None
        self._complete = False
        self._head_only = False
        self._last_data = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timeout_s = 0.0
        self._kept_for = IDLE_S
        self.status_line: tuple[int, Headers] = (0, [])

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection is not reusable
            self.close()
            return
        self._last_data = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(_Failure("the store switched protocols", sent=True))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(_Failure(f"bad answer: {exc}", sent=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            self._fail(_Failure("connection closed before the answer was complete", sent=True))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1"), value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        kept = IDLE_S
        for name, value in self._headers:
            lowered = name.lower()
            if lowered == "content-encoding" and value.strip().lower() in _DECODERS:
                self._decoder = zlib.decompressobj(_DECODERS[value.strip().lower()])
            elif lowered == "keep-alive" and (found := _KEEP_ALIVE_TIMEOUT.search(value)):
                kept = min(kept, max(int(found[1]) - 1.0, 0.0))
        if self._decoder is not None:
            self._headers = [
                (k, v)
                for k, v in self._headers
                if k.lower() not in ("content-encoding", "content-length")
            ]
        self._kept_for = kept
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(_Failure(f"bad compressed answer: {exc}", sent=True))
                self.close()
                return
        if not body:
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._streaming:
            if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
                self._paused = True
                self.transport.pause_reading()
            self._wake_reader()

    def on_message_complete(self) -> None:
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._body.append(rest)
        self._complete = True
        self._stop_timer()
        if self._end is not None and not self._end.done():
            self._end.set_result(None)
        self._wake_reader()

    # the request's side
    def _fail(self, failure: _Failure) -> None:
        self._stop_timer()
        for waiter in (self._head, self._end, self._wake):
            if waiter is not None and not waiter.done():
                waiter.set_exception(failure)
                waiter.exception()  # retrieved: a stream nobody reads any more is no error

    def _wake_reader(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def close(self) -> None:
        """Close the connection; it is not used again."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _start(self, request: bytes, head_only: bool, timeout_s: float, streaming: bool) -> None:
        """Write ``request``; raise ``_Failure`` (not sent) when the connection is gone."""
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise _Failure("the kept connection was closed", sent=False)
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._buffered = [], deque(), 0
        self._status, self._complete, self._decoder = 0, False, None
        self._head_only, self._streaming = head_only, streaming
        self._head = self._loop.create_future()
        self._end = self._loop.create_future()
        self._timeout_s = timeout_s
        self._last_data = self._loop.time()
        self._timer = self._loop.call_later(timeout_s, self._check_silence)
        self.transport.write(request)

    def _check_silence(self) -> None:
        """Fail the exchange when the store stayed silent ``timeout_s``; else look again."""
        silent = self._loop.time() - self._last_data
        if silent < self._timeout_s:
            self._timer = self._loop.call_later(self._timeout_s - silent, self._check_silence)
            return
        self._timer = None
        self._fail(_Failure("timed out", sent=True, timeout=True))
        self.close()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finished(self) -> None:
        """The exchange is over: the connection may serve the next request."""
        self._parser = None
        self._head = self._end = self._wake = None
        self.idle_until = self._loop.time() + self._kept_for

    async def exchange(self, request: bytes, head_only: bool, timeout_s: float) -> Answer:
        """Send ``request`` and return the whole answer; raise ``_Failure``."""
        self._start(request, head_only, timeout_s, streaming=False)
        assert self._end is not None
        try:
            await self._end
        finally:
            self._stop_timer()
        answer = Answer(self._status, self._headers, b"".join(self._body))
        self._finished()
        return answer

    async def open(self, request: bytes, timeout_s: float) -> tuple[int, Headers]:
        """Send ``request``; return status and headers once they came; raise ``_Failure``."""
        self._start(request, False, timeout_s, streaming=True)
        assert self._head is not None
        await self._head
        return self._status, self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body of an opened answer as it arrives; raise ``_Failure``."""
        while True:
            while self._body:
                chunk = self._body.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered <= HIGH_WATER // 4:
                    self._paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                yield chunk
            if self._complete:
                self._finished()
                return
            if self._end is not None and self._end.done():
                self._end.result()  # raises the failure
            self._wake = self._loop.create_future()
            await self._wake


class HttpLink:
    """Kept-alive connections to one store's ``scheme://host:port``.

    ``store`` names the store in the errors raised; ``request`` and ``stream`` raise
    ``NotSent`` or ``OutcomeUnknown`` (see the module).
    """

    def __init__(
        self,
        store: str,
        scheme: str,
        host: str,
        port: int,
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        limit: int = 512,
    ) -> None:
        self.store = store
        self.host, self.port = host, port
        self.host_header = (
            host if (scheme, port) in (("http", 80), ("https", 443)) else (f"{host}:{port}")
        )
        self.ssl = ssl.create_default_context() if scheme == "https" else None
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(limit)

    def _error(self, failure: _Failure) -> UpstreamError:
        kind = OutcomeUnknown if failure.sent else NotSent
        return kind(self.store, str(failure), timeout=failure.timeout)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise NotSent(self.store, "connect timed out", timeout=True) from None
        except OSError as exc:
            raise NotSent(self.store, f"cannot connect: {exc.strerror or exc}") from None
        return conn

    def _wire(self, method: str, target: str, headers: HeaderItems, body: bytes) -> bytes:
        if any(c in target for c in " \r\n\t") or not target.startswith("/"):
            raise NotSent(self.store, "the request target is not a plain path")
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        for name, value in headers:
            if name.lower() in _SET_HERE:
                continue
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise NotSent(self.store, f"header {name!r} holds a line break")
            lines.append(f"{name}: {value}\r\n")
        lines.append(f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\n\r\n")
        return "".join(lines).encode("utf-8", "surrogateescape") + body

    def _kept(self) -> _Connection | None:
        """The most recently used kept connection still fit for a request."""
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and conn.idle_until > now:
                return conn
            conn.close()
        return None

    async def request(self, method: str, target: str, headers: HeaderItems, body: bytes) -> Answer:
        """Send one request and return its whole answer; raise ``UpstreamError``."""
        wire = self._wire(method, target, headers, body)
        head_only = method == "HEAD"
        async with self._slots:
            while (conn := self._kept()) is not None:
                try:
                    answer = await conn.exchange(wire, head_only, self.read_timeout_s)
                except _Failure as exc:
                    conn.close()
                    # A kept connection the store had just closed: the request most
                    # likely never reached it, but it may have. Only a request that
                    # changes nothing, or one certainly not sent, goes again.
                    if exc.timeout or (exc.sent and method not in _SAFE):
                        raise self._error(exc) from None
                    continue
                except BaseException:  # cancelled: the answer may still come; not reusable
                    conn.close()
                    raise
                self._keep(conn)
                return answer
            conn = await self._connect()
            try:
                answer = await conn.exchange(wire, head_only, self.read_timeout_s)
            except _Failure as exc:
                conn.close()
                raise self._error(exc) from None
            except BaseException:
                conn.close()
                raise
            self._keep(conn)
            return answer

    @asynccontextmanager
    async def stream(
        self, method: str, target: str, headers: HeaderItems, body: bytes
    ) -> AsyncIterator[Streamed]:
        """Send one request; its body is read while the context is open.

        Only the store's failures become ``UpstreamError``: what the caller does with
        the answer while it reads it stays the caller's.
        """
        wire = self._wire(method, target, headers, body)
        async with self._slots:
            conn = await self._opened(method, wire)
            try:
                yield Streamed(conn.status_line[0], conn.status_line[1], self._chunks(conn))
            finally:
                if conn.idle_until and not conn.closed and conn.keep_alive:
                    self._keep(conn)
                else:
                    conn.close()

    async def _opened(self, method: str, wire: bytes) -> _Connection:
        """A connection with ``wire`` sent and the answer's head read."""
        while True:
            conn = self._kept()
            fresh = conn is None
            if conn is None:
                conn = await self._connect()
            conn.idle_until = 0.0  # set again only once the answer is read to its end
            try:
                conn.status_line = await conn.open(wire, self.read_timeout_s)
            except _Failure as exc:
                conn.close()
                if fresh or exc.timeout or (exc.sent and method not in _SAFE):
                    raise self._error(exc) from None
                continue
            except BaseException:
                conn.close()
                raise
            return conn

    async def _chunks(self, conn: _Connection) -> AsyncIterator[bytes]:
        try:
            async for chunk in conn.chunks():
                yield chunk
        except _Failure as exc:
            conn.close()
            raise self._error(exc) from None

    def _keep(self, conn: _Connection) -> None:
        if conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every kept connection."""
        while self._idle:
            self._idle.pop().close()

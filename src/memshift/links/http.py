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
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from memshift.errors import NotSent, OutcomeUnknown, UpstreamError
from memshift.links.connection import Answer, Connection, Failure, Headers

HeaderItems = Sequence[tuple[str, str]]
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
# Headers this client writes itself.
_UNSAFE_TARGET = re.compile(r"[ \r\n\t]")
_BREAK = re.compile(r"[\r\n]")
_SET_HERE = frozenset(
    {"host", "content-length", "transfer-encoding", "accept-encoding", "connection", "expect"}
)


@dataclass(frozen=True)
class Streamed:
    """A store's answer whose body is read as it arrives."""

    status: int
    headers: Headers
    chunks: AsyncIterator[bytes]


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
        self._idle: deque[Connection] = deque()
        self._slots = asyncio.Semaphore(limit)

    def _error(self, failure: Failure) -> UpstreamError:
        kind = OutcomeUnknown if failure.sent else NotSent
        return kind(self.store, str(failure), timeout=failure.timeout)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                _, conn = await loop.create_connection(
                    Connection, self.host, self.port, ssl=self.ssl
                )
        except TimeoutError:
            raise NotSent(self.store, "connect timed out", timeout=True) from None
        except OSError as exc:
            raise NotSent(self.store, f"cannot connect: {exc.strerror or exc}") from None
        return conn

    def _wire(self, method: str, target: str, headers: HeaderItems, body: bytes) -> bytes:
        if not target.startswith("/") or _UNSAFE_TARGET.search(target):
            raise NotSent(self.store, "the request target is not a plain path")
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"]
        lines += [
            f"{name}: {value}\r\n" for name, value in headers if name.lower() not in _SET_HERE
        ]
        lines.append(f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\n\r\n")
        head = "".join(lines)
        # One CR and one LF end each line: any more came inside a header (a client's
        # value, say), which must not end the line early and inject another.
        breaks = len(lines) + 3  # two on the first, three on the last
        if head.count("\n") != breaks or head.count("\r") != breaks:
            broken = [n for n, v in headers if _BREAK.search(f"{n}{v}")]
            raise NotSent(self.store, f"header {broken[0]!r} holds a line break")
        return head.encode("utf-8", "surrogateescape") + body

    def _kept(self) -> Connection | None:
        """The most recently used kept connection still fit for a request."""
        while self._idle:
            conn = self._idle.pop()
            if conn.fit():
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
                except Failure as exc:
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
            except Failure as exc:
                conn.close()
                raise self._error(exc) from None
            except BaseException:
                conn.close()
                raise
            self._keep(conn)
            return answer

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        target: str,
        headers: HeaderItems,
        body: bytes,
        idle_s: float | None = None,
    ) -> AsyncIterator[Streamed]:
        """Send one request; its body is read while the context is open.

        ``idle_s``: how long the body may stay silent once the head came (a stream
        that carries events when there are some), instead of ``read_timeout_s``.
        Only the store's failures become ``UpstreamError``: what the caller does with
        the answer while it reads it stays the caller's.
        """
        wire = self._wire(method, target, headers, body)
        async with self._slots:
            conn = await self._opened(method, wire)
            if idle_s is not None:
                conn.quiet_for(idle_s)
            try:
                yield Streamed(conn.status_line[0], conn.status_line[1], self._chunks(conn))
            finally:
                if conn.idle_until and not conn.closed and conn.keep_alive:
                    self._keep(conn)
                else:
                    conn.close()

    async def _opened(self, method: str, wire: bytes) -> Connection:
        """A connection with ``wire`` sent and the answer's head read."""
        while True:
            conn = self._kept()
            fresh = conn is None
            if conn is None:
                conn = await self._connect()
            conn.idle_until = 0.0  # set again only once the answer is read to its end
            try:
                conn.status_line = await conn.open(wire, self.read_timeout_s)
            except Failure as exc:
                conn.close()
                if fresh or exc.timeout or (exc.sent and method not in _SAFE):
                    raise self._error(exc) from None
                continue
            except BaseException:
                conn.close()
                raise
            return conn

    async def _chunks(self, conn: Connection) -> AsyncIterator[bytes]:
        try:
            async for chunk in conn.chunks():
                yield chunk
        except Failure as exc:
            conn.close()
            raise self._error(exc) from None

    def _keep(self, conn: Connection) -> None:
        if conn.keep_alive and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        """Close every kept connection."""
        while self._idle:
            self._idle.pop().close()

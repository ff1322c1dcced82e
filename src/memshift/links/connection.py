"""One kept-alive HTTP/1.1 connection to a store: a request at a time, its answer as it comes.

The answer is read whole (``exchange``) or as it arrives (``open``, then ``chunks``,
with the socket paused while a reader lags). Parsing is llhttp's, through httptools.
A connection watches the store's silence: no byte for ``timeout_s`` while an answer
is owed fails the exchange. Every failure is a ``Failure`` that says whether the
request may have reached the store (``sent``); the link (``http.py``) turns it into
the store's error.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

import httptools

from memshift.links import clock

Headers = list[tuple[str, str]]
IDLE_S = 30.0  # the longest a connection is kept unused, whatever the store says
_KEEP_ALIVE_TIMEOUT = re.compile(r"timeout\s*=\s*(\d+)", re.IGNORECASE)
HIGH_WATER = 1024 * 1024  # a streamed answer buffered past this pauses the socket
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_WATCHED_LENGTHS = frozenset({len(b"content-encoding"), len(b"keep-alive")})


@dataclass(slots=True)
class Answer:
    """A store's whole answer, and when its last byte was read (``clock.now()``)."""

    status: int
    headers: Headers
    body: bytes
    done_at: float


class Failure(Exception):
    """Raised inside a connection; the link turns it into the store's ``UpstreamError``."""

    def __init__(self, message: str, *, sent: bool, timeout: bool = False) -> None:
        super().__init__(message)
        self.sent = sent
        self.timeout = timeout


class Connection(asyncio.Protocol):
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
        self._done_at = 0.0
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
            self._fail(Failure("the store switched protocols", sent=True))
            self.close()
        except httptools.HttpParserError as exc:
            self._fail(Failure(f"bad answer: {exc}", sent=True))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._complete:
            self._fail(Failure("connection closed before the answer was complete", sent=True))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        text = value.decode("utf-8", "surrogateescape")
        self._headers.append((name.decode("latin-1"), text))
        if len(name) in _WATCHED_LENGTHS:  # most headers are none of those watched
            self._watch(name.lower(), text)

    def _watch(self, name: bytes, value: str) -> None:
        if name == b"content-encoding" and value.strip().lower() in _DECODERS:
            self._decoder = zlib.decompressobj(_DECODERS[value.strip().lower()])
        elif name == b"keep-alive" and (found := _KEEP_ALIVE_TIMEOUT.search(value)):
            self._kept_for = min(self._kept_for, max(int(found[1]) - 1.0, 0.0))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        self._status = self._parser.get_status_code()
        self.keep_alive = self._parser.should_keep_alive()
        if self._decoder is not None:
            self._headers = [
                (k, v)
                for k, v in self._headers
                if k.lower() not in ("content-encoding", "content-length")
            ]
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._head_only:
            self.on_message_complete()

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(Failure(f"bad compressed answer: {exc}", sent=True))
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
        # The answer's time ends here, not when its reader resumes: a busy (or starved)
        # event loop may run other work first, which is not the store's time.
        self._done_at = clock.now()
        if self._end is not None and not self._end.done():
            self._end.set_result(None)
        self._wake_reader()

    # the request's side
    def _fail(self, failure: Failure) -> None:
        self._stop_timer()
        for waiter in (self._head, self._end, self._wake):
            if waiter is not None and not waiter.done():
                waiter.set_exception(failure)
                waiter.exception()  # retrieved: a stream nobody reads any more is no error

    def _wake_reader(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def fit(self) -> bool:
        """Whether this kept connection may carry another request."""
        return not self.closed and self.idle_until > self._loop.time()

    def close(self) -> None:
        """Close the connection; it is not used again."""
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.close()

    def _start(self, request: bytes, head_only: bool, timeout_s: float, streaming: bool) -> None:
        """Write ``request``; raise ``Failure`` (not sent) when the connection is gone."""
        assert self.transport is not None
        if self.closed or self.transport.is_closing():
            raise Failure("the kept connection was closed", sent=False)
        self._parser = httptools.HttpResponseParser(self)
        self._headers, self._body, self._buffered = [], deque(), 0
        self._status, self._complete, self._decoder = 0, False, None
        self._kept_for = IDLE_S
        self._head_only, self._streaming = head_only, streaming
        self._head = self._loop.create_future() if streaming else None  # awaited by `open`
        self._end = self._loop.create_future()
        self._timeout_s = timeout_s
        now = self._last_data = self._loop.time()
        # The silence timer outlives the exchange (it stops itself on an idle connection):
        # one timer per connection, not one per request. A new one only when the one
        # running would look too late.
        timer = self._timer
        if timer is None or timer.when() > now + timeout_s:
            if timer is not None:
                timer.cancel()
            self._timer = self._loop.call_later(timeout_s, self._check_silence)
        self.transport.write(request)

    def _check_silence(self) -> None:
        """Fail the exchange when the store stayed silent ``timeout_s``; else look again
        (while an answer is owed: on an idle connection the timer stops)."""
        if self.closed or self._parser is None or self._complete:
            self._timer = None
            return
        silent = self._loop.time() - self._last_data
        if silent < self._timeout_s:
            self._timer = self._loop.call_later(self._timeout_s - silent, self._check_silence)
            return
        self._timer = None
        self._fail(Failure("timed out", sent=True, timeout=True))
        self.close()

    def quiet_for(self, seconds: float) -> None:
        """From now on, the answer may stay silent ``seconds`` before it fails."""
        self._timeout_s = seconds

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
        """Send ``request`` and return the whole answer; raise ``Failure``."""
        self._start(request, head_only, timeout_s, streaming=False)
        assert self._end is not None
        await self._end
        answer = Answer(self._status, self._headers, b"".join(self._body), self._done_at)
        self._finished()
        return answer

    async def open(self, request: bytes, timeout_s: float) -> tuple[int, Headers]:
        """Send ``request``; return status and headers once they came; raise ``Failure``."""
        self._start(request, False, timeout_s, streaming=True)
        assert self._head is not None
        await self._head
        return self._status, self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body of an opened answer as it arrives; raise ``Failure``."""
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

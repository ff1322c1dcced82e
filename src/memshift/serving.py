"""Run aiohttp applications on their listeners until Ctrl-C or SIGTERM.

A listener that cannot be had (a port in use, an address not on this machine) is one
line naming the setting at fault (``ConfigError``), after the listeners already
started are closed again: nothing is left half-started.

Every listener closes a connection whose request headers take longer than
``header_timeout_s`` to arrive (a client sending a header line now and then holds a
connection, and a file descriptor, for as long as it likes otherwise; aiohttp has no
such limit of its own). It is answered 408 and logged without any of what it sent.
A body's own pauses are limited where it is read (``webutil.read_body``). A request
aiohttp cannot parse is answered with the JSON error every other refusal gets.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from memshift.config.settings import Listen
from memshift.errors import ConfigError
from memshift.limits import HEADER_TIMEOUT_S
from memshift.runtime import settle_heap
from memshift.webutil import HTTP_CODES, error_response, listen_problem

log = structlog.get_logger("memshift.http")

App = tuple[web.Application, Listen, str]  # an app, where it listens, the setting saying so
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# The one handler every request to the app goes to (its router is not consulted).
DIRECT: web.AppKey[Handler] = web.AppKey("direct_handler")
LINGER_S = 2.0
_LATE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class _GuardedHandler(RequestHandler):
    """aiohttp's connection handler, with a deadline on each request's headers.

    A deadline starts when bytes of a request arrive while the connection waits for
    one, and is met when aiohttp has parsed that request's headers (its count of
    requests moves on). It reads aiohttp's ``_waiter`` and ``_request_count``; the
    slow-header tests fail if a new aiohttp renames them.
    """

    __slots__ = ("_header_count", "_header_timer")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_count = -1

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiting = self._waiter is not None and not self._waiter.done()
        if not waiting or self._header_count == self._request_count:
            return
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_count = self._request_count
        timeout = getattr(self._manager, "header_timeout_s", HEADER_TIMEOUT_S)
        self._header_timer = self._loop.call_later(timeout, self._headers_late)

    def _headers_late(self) -> None:
        self._header_timer = None
        transport = self.transport
        late = self._header_count == self._request_count
        if not late or transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        log.warning("request_headers_timeout", peer=str(peer[0]) if peer else "")
        transport.write(_LATE)
        self.force_close()
        transport.close()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse or serve, answered as JSON.

        aiohttp's own answer is plain text and its log line a traceback quoting the
        raw request line, which may be an ``Authorization`` header: here neither the
        answer nor the log holds anything the client sent.
        """
        error = type(exc).__name__ if exc is not None else ""
        log.warning("http_request_refused", status=status, error=error, peer=request.remote or "")
        if request.writer is not None and request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: the connection is dropped")
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        code = HTTP_CODES.get(status, "bad_request" if status == 400 else "http_error")
        response = error_response(status, code, f"{phrase} ({error})" if error else phrase)
        response.force_close()
        return response

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    """aiohttp's server, making ``_GuardedHandler`` connections."""

    header_timeout_s = HEADER_TIMEOUT_S

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


async def _continued(request: web.Request) -> web.StreamResponse | None:
    """Answer a request's ``Expect`` header as aiohttp's router does; a refusal or None."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return error_response(417, "expectation_failed", f"unknown Expect: {expect[:100]}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the answer itself has not begun
    return None


def _direct(handler: Handler) -> Handler:
    async def serve(request: web.Request) -> web.StreamResponse:
        if hdrs.EXPECT in request.headers:
            refused = await _continued(request)
            if refused is not None:
                return refused
        return await handler(request)

    return serve


class GuardedRunner(web.AppRunner):
    """An ``AppRunner`` whose connections have a deadline for their headers.

    A request refused before its body was read (too large, too slow) is answered at
    once; the rest of its body is then read and thrown away for ``LINGER_S`` at most
    (aiohttp's 10 s by default), so that the client sees the answer before the close.
    An app naming a ``DIRECT`` handler is served by it, without the router.
    """

    def __init__(self, app: web.Application, header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        super().__init__(app, access_log=None, handle_signals=False, lingering_time=LINGER_S)
        self.header_timeout_s = header_timeout_s

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _GuardedServer  # same layout: only __call__ differs
        server.header_timeout_s = self.header_timeout_s  # type: ignore[attr-defined]
        direct = self.app.get(DIRECT)
        if direct is not None:  # connections read the handler from the server when made
            # This runner's requests are web.Request: it makes them for its app.
            server.request_handler = _direct(direct)  # type: ignore[assignment]
        return server


async def start_app(
    app: web.Application, listen: Listen, key: str, header_timeout_s: float, **site: Any
) -> GuardedRunner:
    """Start ``app`` listening on ``listen``; a listener not had is ``ConfigError(key)``."""
    runner = GuardedRunner(app, header_timeout_s)
    await runner.setup()
    try:
        await web.TCPSite(runner, listen.host, listen.port, reuse_address=True, **site).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(key, listen_problem(exc, listen)) from None
    return runner


async def serve_apps(
    apps: list[App],
    on_ready: Callable[[], None] | None = None,
    alongside: Sequence[Coroutine[Any, Any, None]] = (),
    *,
    reuse_port: bool = False,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> None:
    """Start every app on its listener, wait for a stop signal, then stop them in reverse.

    ``alongside`` runs once every app is listening and is cancelled before they stop.
    """
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for app, listen, key in apps:
            runners.append(
                await start_app(app, listen, key, header_timeout_s, reuse_port=reuse_port or None)
            )
        settle_heap()
        if on_ready:
            on_ready()
        async with asyncio.TaskGroup() as group:
            extra = [group.create_task(work) for work in alongside]
            await stop.wait()
            for task in extra:
                task.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for runner in reversed(runners):
            await runner.cleanup()

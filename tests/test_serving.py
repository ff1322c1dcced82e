"""Listeners against clients that dawdle, lie about sizes or send what HTTP is not.

A real store is served by ``serving.start_app`` on a port of its own, and spoken to
over raw sockets: the header deadline, the body's pause limit, an over-limit
``Content-Length`` refused before its body, aiohttp's parse errors as JSON, and logs
that never quote what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from structlog.testing import capture_logs

from memshift.config.settings import Listen
from memshift.logs import configure
from memshift.serving import GuardedRunner, start_app
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from tests.store.conftest import TOKENS

SECRET = "tok-alice"


@pytest.fixture
async def port(tmp_path: Path) -> AsyncIterator[int]:
    """A reference store with short limits, listening on a free port."""
    settings = StoreSettings(
        engine="new",
        db_url=f"sqlite:///{tmp_path}/s.db",
        max_body_bytes=4096,
        body_timeout_s=0.5,
    )
    runner: GuardedRunner = await start_app(
        make_app(settings, TOKENS), Listen(host="127.0.0.1", port=0), "--listen", 0.5
    )
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def _exchange(port: int, *pieces: bytes, pause: float = 0.0) -> tuple[bytes, bool]:
    """Send ``pieces`` with ``pause`` between them; return what came back, and whether
    the server closed the connection before every piece was sent."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = bytearray()

    async def drain() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                received.extend(chunk)

    reading = asyncio.ensure_future(drain())
    cut = False
    try:
        for piece in pieces:
            if reading.done():
                cut = True
                break
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)
        async with asyncio.timeout(10):
            await reading
    except ConnectionError:
        cut = True
        async with asyncio.timeout(10):
            await reading
    finally:
        writer.close()
    return bytes(received), cut


def _status_and_body(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), orjson.loads(body) if body else {}


async def test_headers_that_dawdle_are_answered_408_and_the_connection_closed(port: int) -> None:
    """One header line every 0.2 s: the 0.5 s deadline ends it long before the last."""
    lines = [b"GET /v1/stats HTTP/1.1\r\n"] + [f"X-Slow-{i}: x\r\n".encode() for i in range(40)]
    with capture_logs() as logs:
        answer, cut = await _exchange(port, *lines, pause=0.2)
    assert cut
    assert 408 == _status_and_body(answer)[0]
    assert any(e["event"] == "request_headers_timeout" for e in logs)


async def test_headers_sent_in_pieces_in_time_are_served(port: int) -> None:
    """A request whose headers arrive in pieces, within the deadline, is served."""
    answer, cut = await _exchange(
        port,
        b"GET /v1/stats HTTP/1.1\r\nHost: x\r\n",
        f"Authorization: Bearer {SECRET}\r\nConnection: close\r\n\r\n".encode(),
        pause=0.1,
    )
    assert not cut
    assert 200 == _status_and_body(answer)[0]


async def test_a_keepalive_connection_gets_a_new_deadline_per_request(port: int) -> None:
    """Requests on one connection, each on time, are all served: the deadline is each's."""
    request = f"GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n"
    closing = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n")
    answer, cut = await _exchange(
        port, *(request.encode() for _ in range(4)), closing.encode(), pause=0.3
    )
    assert not cut
    assert 5 == answer.count(b"HTTP/1.1 200")


async def test_headers_that_dawdle_after_a_request_in_time_are_answered_408(port: int) -> None:
    """On a kept connection, a request served in time, then one whose header lines come
    every 0.2 s: the second is held to its own deadline and answered 408."""
    request = f"GET /v1/stats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n"
    lines = [b"GET /v1/stats HTTP/1.1\r\n"] + [f"X-Slow-{i}: x\r\n".encode() for i in range(40)]
    with capture_logs() as logs:
        answer, cut = await _exchange(port, request.encode(), *lines, pause=0.2)
    assert cut
    assert 1 == answer.count(b"HTTP/1.1 200")
    assert b"HTTP/1.1 408" in answer
    assert any(e["event"] == "request_headers_timeout" for e in logs)


async def test_a_body_that_stops_half_way_is_answered_408(port: int) -> None:
    """A body that pauses past body_timeout_s is refused 408, in JSON; nothing stored."""
    head = (
        "POST /v1/memories HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {SECRET}\r\nContent-Length: 100\r\n\r\n"
    )
    answer, _cut = await _exchange(port, head.encode() + b'{"title": "t",', pause=0.0)
    status, body = _status_and_body(answer)
    assert (408, "request_timeout") == (status, body["error"]["code"])  # type: ignore[index]


async def test_a_content_length_over_the_limit_is_refused_before_its_body(port: int) -> None:
    """413 comes back for the headers alone: the body is never waited for."""
    head = (
        "POST /v1/memories HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {SECRET}\r\nContent-Length: 999999999\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode())
    await writer.drain()
    async with asyncio.timeout(5):  # no body is sent: only an early answer ends this
        first = await reader.readuntil(b"\r\n\r\n")
    writer.close()
    assert b" 413 " in first.split(b"\r\n")[0]


@pytest.mark.parametrize(
    "request_bytes",
    [
        f"Authorization: Bearer {SECRET}\r\n\r\n".encode(),
        f"GET /v1/stats HTTP/1.1\r\nX-Bad\x01Header: Bearer {SECRET}\r\n\r\n".encode(),
        f"GET /v1/stats HTTP/1.1\r\nHost: x\r\nContent-Length: x{SECRET}\r\n\r\n".encode(),
        (
            "POST /v1/memories HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
            f"Authorization: Bearer {SECRET}\r\nContent-Length: 2\r\n\r\n{{}}"
        ).encode(),
    ],
    ids=["header-as-request-line", "control-char", "bad-length", "encoding-not-installed"],
)
async def test_what_aiohttp_cannot_parse_is_a_json_error_and_no_log_quotes_it(
    port: int, request_bytes: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """A request aiohttp refuses gets a JSON 4xx; the log names the error, not the line."""
    configure(json=True)  # the conftest takes it back after the test
    answer, _cut = await _exchange(port, request_bytes)
    logging.getLogger("aiohttp.server").error(
        "Error handling request %s", f"Authorization: Bearer {SECRET}"
    )
    status, body = _status_and_body(answer)
    assert 400 <= status < 500
    assert body["error"]["code"]  # type: ignore[index]
    assert SECRET not in answer.decode(errors="replace")
    logged = capsys.readouterr().err
    assert "http_request_refused" in logged
    assert "library_log" in logged
    assert SECRET not in logged


@pytest.fixture
async def direct_port() -> AsyncIterator[int]:
    """An app naming a ``DIRECT`` handler (echoing the body) beside a router that
    would answer otherwise, listening on a free port."""
    from aiohttp import web

    from memshift.serving import DIRECT

    async def routed(_request: web.Request) -> web.Response:
        return web.Response(text="routed")

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=b"direct:" + await request.read())

    app = web.Application()
    app[DIRECT] = echo
    app.router.add_route("*", "/{tail:.*}", routed)
    runner = await start_app(app, Listen(host="127.0.0.1", port=0), "proxy.listen", 5.0)
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


async def test_an_app_with_a_direct_handler_is_served_by_it_alone(direct_port: int) -> None:
    answer, _ = await _exchange(
        direct_port,
        b"POST /any/path HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert answer.endswith(b"\r\n\r\ndirect:hi")


async def test_a_direct_handler_answers_100_continue_before_the_body(direct_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", direct_port)
    try:
        writer.write(
            b"PUT /m HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        )
        async with asyncio.timeout(10):  # no body sent yet: only the interim answer comes
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(v for k, v in _lines(head) if k == b"content-length"))
            body = await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200")
        assert body == b"direct:hello"
    finally:
        writer.close()


async def test_a_direct_handler_refuses_an_unknown_expectation_as_json(direct_port: int) -> None:
    answer, _ = await _exchange(
        direct_port,
        b"PUT /m HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\nContent-Length: 0\r\nConnection: close"
        b"\r\n\r\n",
    )
    status, body = _status_and_body(answer)
    assert status == 417
    assert body["error"]["code"] == "expectation_failed"  # type: ignore[index]


def _lines(head: bytes) -> list[tuple[bytes, bytes]]:
    fields = [line.partition(b":") for line in head.split(b"\r\n")[1:] if b":" in line]
    return [(name.strip().lower(), value.strip()) for name, _, value in fields]

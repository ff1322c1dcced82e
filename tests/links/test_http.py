"""The store client against real servers on port 0: answers, streams, and its failure taxonomy."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from memshift.errors import NotSent, OutcomeUnknown
from memshift.links.http import HttpLink


def link_to(host: str, port: int, **timeouts: float) -> HttpLink:
    return HttpLink(
        "legacy",
        "http",
        host,
        port,
        connect_timeout_s=timeouts.get("connect", 2.0),
        read_timeout_s=timeouts.get("read", 5.0),
    )


async def app_server(aiohttp_server: Any, handle: Any) -> Any:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return await aiohttp_server(app)


Raw = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Raw], Awaitable[int]]]:
    """A TCP server on port 0 whose handler writes whatever bytes a test wants."""
    servers: list[asyncio.Server] = []

    async def start(handle: Raw) -> int:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request with a Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


async def test_answers_are_read_whole_over_one_kept_connection(aiohttp_server: Any) -> None:
    """Whole answers (plain, chunked, HEAD) come back over one kept-alive connection."""
    peers: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        if request.path == "/chunked":
            answer = web.StreamResponse(headers={"X-Kind": "chunked"})
            answer.enable_chunked_encoding()
            await answer.prepare(request)
            for part in (b"one,", b"two,", b"three"):
                await answer.write(part)
            await answer.write_eof()
            return answer
        return web.json_response(
            {"method": request.method, "body": body.decode(), "seen": dict(request.headers)},
            status=201 if request.method == "POST" else 200,
        )

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port)
    try:
        got = await link.request(
            "POST", "/v1/x?y=1", [("Accept-Encoding", "gzip"), ("X-A", "b")], b"hello"
        )
        assert 201 == got.status
        doc = orjson.loads(got.body)
        assert ("POST", "hello") == (doc["method"], doc["body"])
        assert "identity" == doc["seen"]["Accept-Encoding"]  # ours, not the caller's
        assert "b" == doc["seen"]["X-A"]
        chunked = await link.request("GET", "/chunked", [], b"")
        assert (200, b"one,two,three") == (chunked.status, chunked.body)
        assert ("X-Kind", "chunked") in chunked.headers
        head = await link.request("HEAD", "/v1/x", [], b"")
        assert (200, b"") == (head.status, head.body)
        assert len(set(peers)) == 1  # every request on the same connection
    finally:
        link.close()


async def test_a_compressed_answer_is_decoded(aiohttp_server: Any) -> None:
    """A store that compresses despite ``Accept-Encoding: identity`` is decoded (both ways)."""

    async def handle(request: web.Request) -> web.Response:
        body = gzip.compress(b'{"id": 7}')
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port)
    try:
        whole = await link.request("GET", "/", [], b"")
        assert b'{"id": 7}' == whole.body
        assert not any(k.lower() == "content-encoding" for k, _ in whole.headers)
        async with link.stream("GET", "/", [], b"") as streamed:
            assert b'{"id": 7}' == b"".join([c async for c in streamed.chunks])
    finally:
        link.close()


async def test_a_stream_arrives_as_it_is_sent_and_its_connection_is_kept(
    aiohttp_server: Any,
) -> None:
    """The first chunk is read before the store sends the last; the connection serves again."""
    release = asyncio.Event()
    peers: list[Any] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        answer = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await answer.prepare(request)
        await answer.write(b"data: 1\n\n")
        await release.wait()
        await answer.write(b"data: 2\n\n")
        await answer.write_eof()
        return answer

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port)
    try:
        async with asyncio.timeout(5), link.stream("POST", "/mcp", [], b"{}") as streamed:
            chunks = streamed.chunks.__aiter__()
            assert b"data: 1\n\n" == await chunks.__anext__()
            release.set()
            assert b"data: 2\n\n" == b"".join([c async for c in chunks])
        again = await link.request("GET", "/", [], b"")
        assert 200 == again.status
        assert 1 == len(set(peers))
    finally:
        link.close()


async def test_a_stream_silent_past_the_read_timeout_is_outcome_unknown(
    aiohttp_server: Any,
) -> None:
    """``read_timeout_s`` is the longest silence between two chunks, as before the head."""

    async def handle(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()
        await answer.prepare(request)
        for _ in range(4):  # each chunk within the timeout: the whole takes longer than it
            await answer.write(b"x")
            await asyncio.sleep(0.15)
        await asyncio.sleep(2)
        return answer

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port, read=0.4)
    try:
        got = b""
        with pytest.raises(OutcomeUnknown) as late:
            async with link.stream("GET", "/", [], b"") as streamed:
                async for chunk in streamed.chunks:
                    got += chunk
        assert (b"xxxx", True) == (got, late.value.timeout)
    finally:
        link.close()


async def test_a_kept_connection_the_store_closed(aiohttp_server: Any) -> None:
    """A GET goes again on a fresh connection; a POST found on a closed one is sent once."""
    calls: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        calls.append(request.method)
        await request.read()
        return web.Response(text="ok", headers={"Connection": "keep-alive"})

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port)
    try:
        await link.request("GET", "/a", [], b"")
        kept = link._idle[-1]
        assert kept.transport is not None
        kept.transport.abort()  # the connection dies; the link has not been told yet
        got = await link.request("GET", "/b", [], b"")
        assert (200, b"ok") == (got.status, got.body)
        kept = link._idle[-1]
        assert kept.transport is not None
        kept.transport.abort()
        posted = await link.request("POST", "/d", [], b"x")
        assert 200 == posted.status
        assert ["GET", "GET", "POST"] == calls  # the write reached the store exactly once
    finally:
        link.close()


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"HTTP/1.1 201 Created\r\nContent-Le",
        b'HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{"id"',
    ],
    ids=["before_status_line", "mid_headers", "mid_body"],
)
async def test_a_store_that_drops_the_connection_after_the_request_is_outcome_unknown(
    raw_server: Callable[[Raw], Awaitable[int]], sent: bytes
) -> None:
    """The request was read, then the connection dropped: it may have been applied."""
    received: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.write(sent)
        await writer.drain()
        writer.close()

    link = link_to("127.0.0.1", await raw_server(drop))
    try:
        with pytest.raises(OutcomeUnknown) as broken:
            await link.request("POST", "/v1/memories", [], b'{"title": "t"}')
        assert not broken.value.timeout
        assert 1 == len(received)
        with pytest.raises(OutcomeUnknown):
            async with link.stream("POST", "/mcp", [], b"{}") as streamed:
                [chunk async for chunk in streamed.chunks]
    finally:
        link.close()


async def test_a_connect_timeout_and_a_refusal_are_not_sent(unused_tcp_port: int) -> None:
    """Nothing reached the store: a connect that timed out, a refused one, a bad header."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname())  # the backlog is full now
    link = link_to("127.0.0.1", full.getsockname()[1], connect=0.3)
    try:
        with pytest.raises(NotSent) as late:
            await link.request("POST", "/v1/memories", [], b"{}")
        assert late.value.timeout and not late.value.sent
        for name, value in [
            ("X-Evil", "a\r\nX-Injected: 1"),
            ("X-Evil", "a\nX-Injected: 1"),
            ("X-Evil", "a\r"),
            ("X-Evil\r\nX-Injected", "1"),
        ]:
            with pytest.raises(NotSent, match=r"X-Evil.* line break"):
                await link.request("GET", "/x", [("Accept", "*/*"), (name, value)], b"")
        with pytest.raises(NotSent, match="plain path"):
            await link.request("GET", "/x HTTP/1.1\r\nX: y", [], b"")
    finally:
        link.close()
        filler.close()
        full.close()
    refused = link_to("127.0.0.1", unused_tcp_port, connect=1)
    with pytest.raises(NotSent, match="cannot connect") as down:
        await refused.request("GET", "/", [], b"")
    assert not down.value.timeout


async def test_a_late_answer_is_outcome_unknown(aiohttp_server: Any) -> None:
    """A store silent past ``read_timeout_s`` may still apply the request."""

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    server = await app_server(aiohttp_server, slow)
    link = link_to(server.host, server.port, read=0.2)
    try:
        with pytest.raises(OutcomeUnknown) as late:
            await link.request("GET", "/x", [], b"")
        assert late.value.timeout
    finally:
        link.close()


async def test_a_silent_answer_on_a_kept_connection_times_out(aiohttp_server: Any) -> None:
    """The silence timer serves every exchange of a kept connection: a late answer on a
    connection reused while its timer still ran, or after it stopped on an idle
    connection, fails at ``read_timeout_s`` all the same."""
    peers: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peers.append(peer[1] if peer else 0)
        if request.path == "/slow":
            await never.wait()  # no answer: only the silence timer ends the request
        return web.Response(text="ok")

    never = asyncio.Event()
    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port, read=0.3)
    try:
        for idle_s in (0.0, 0.5):  # the timer running still; stopped for idleness
            await link.request("GET", "/quick", [], b"")
            await asyncio.sleep(idle_s)
            await link.request("GET", "/quick", [], b"")
            with pytest.raises(OutcomeUnknown) as late:
                async with asyncio.timeout(10):  # a timer that never fired: TimeoutError
                    await link.request("GET", "/slow", [], b"")
            assert late.value.timeout
            assert peers[-3] == peers[-2] == peers[-1]  # one kept connection
    finally:
        link.close()


async def test_a_connection_is_kept_as_long_as_each_answer_says(aiohttp_server: Any) -> None:
    """``Keep-Alive: timeout=N`` keeps a connection N - 1 s after that answer; an answer
    saying nothing keeps it the link's own time, whatever the one before said."""
    says = iter(["timeout=2", None, "timeout=1", None])
    peers: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        peers.append(peer[1] if peer else 0)
        said = next(says)
        return web.Response(text="ok", headers={"Keep-Alive": said} if said else {})

    server = await app_server(aiohttp_server, handle)
    link = link_to(server.host, server.port)
    try:
        await link.request("GET", "/1", [], b"")  # kept 1 s
        await link.request("GET", "/2", [], b"")  # within it: the same connection
        await asyncio.sleep(1.2)  # past the first answer's time, not the second's
        await link.request("GET", "/3", [], b"")  # the same again; kept 0 s after
        await link.request("GET", "/4", [], b"")  # a new connection
        assert peers[0] == peers[1] == peers[2] != peers[3]
    finally:
        link.close()

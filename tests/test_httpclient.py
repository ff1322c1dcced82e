"""The lean store client against real HTTP servers on port 0."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp import web

from memshift.httpclient import HttpFailure, HttpPool


async def pool_for(server: Any, **timeouts: float) -> HttpPool:
    return HttpPool(
        "http",
        server.host,
        server.port,
        connect_timeout_s=timeouts.get("connect", 2.0),
        read_timeout_s=timeouts.get("read", 5.0),
    )


async def test_answers_are_read_whole_over_one_kept_connection(aiohttp_server: Any) -> None:
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

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    pool = await pool_for(server)
    try:
        got = await pool.request(
            "POST", "/v1/x?y=1", [("Accept-Encoding", "gzip"), ("X-A", "b")], b"hello"
        )
        assert 201 == got.status
        doc = orjson.loads(got.body)
        assert ("POST", "hello") == (doc["method"], doc["body"])
        assert "identity" == doc["seen"]["Accept-Encoding"]  # ours, not the caller's
        assert "b" == doc["seen"]["X-A"]
        chunked = await pool.request("GET", "/chunked", [], b"")
        assert (200, b"one,two,three") == (chunked.status, chunked.body)
        assert ("X-Kind", "chunked") in chunked.headers
        head = await pool.request("HEAD", "/v1/x", [], b"")
        assert (200, b"") == (head.status, head.body)
        assert len(set(peers)) == 1  # every request on the same connection
    finally:
        pool.close()


async def test_a_get_on_a_connection_the_store_closed_is_sent_again_a_post_is_not(
    aiohttp_server: Any,
) -> None:
    calls = 0

    async def handle(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        await request.read()
        return web.Response(text="ok", headers={"Connection": "keep-alive"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = await aiohttp_server(app)
    pool = await pool_for(server)
    try:
        await pool.request("GET", "/a", [], b"")
        kept = pool._idle[-1]
        # The store drops the kept connection; the pool has not noticed yet.
        assert kept.transport is not None
        kept.transport.abort()
        got = await pool.request("GET", "/b", [], b"")
        assert (200, b"ok") == (got.status, got.body)
        await pool.request("GET", "/c", [], b"")
        kept = pool._idle[-1]
        assert kept.transport is not None
        kept.transport.abort()
        before = calls
        with pytest.raises(HttpFailure, match="closed before the answer"):
            await pool.request("POST", "/d", [], b"x")
        assert before == calls  # the write was not sent twice (nor even once)
    finally:
        pool.close()


async def test_late_refused_and_malformed(aiohttp_server: Any, unused_tcp_port: int) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    server = await aiohttp_server(app)
    pool = await pool_for(server, read=0.2)
    try:
        with pytest.raises(HttpFailure) as late:
            await pool.request("GET", "/x", [], b"")
        assert late.value.timeout
        with pytest.raises(HttpFailure, match="line break"):
            await pool.request("GET", "/x", [("X-Evil", "a\r\nX-Injected: 1")], b"")
        with pytest.raises(HttpFailure, match="white space"):
            await pool.request("GET", "/x HTTP/1.1\r\nX: y", [], b"")
    finally:
        pool.close()
    refused = HttpPool("http", "127.0.0.1", unused_tcp_port, connect_timeout_s=1, read_timeout_s=1)
    with pytest.raises(HttpFailure, match="cannot connect") as down:
        await refused.request("GET", "/", [], b"")
    assert not down.value.timeout

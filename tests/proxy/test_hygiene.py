"""Proxy hygiene: headers, forwarding only to the stores, body limit, timeouts, outages."""

from __future__ import annotations

import asyncio
import gzip
import io
import socket
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.proxy.conftest import MakeProxy, MakeStack, auth, echo_server
from tests.proxy.test_workload import assert_stores_match, drained


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {"path": request.path_qs, "headers": dict(request.headers), "size": len(body)},
        headers={"X-Store-Header": "kept", "Keep-Alive": "timeout=5"},
    )


def _url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def _raw(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    """Send a hand-written request; return status, headers and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def test_hop_by_hop_headers_stay_and_forwarding_is_added(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """Hop-by-hop headers never reach a store; X-Forwarded-For gains the client."""
    legacy = await echo_server(aiohttp_server, _echo)
    proxy, _ = await make_proxy(_url(legacy), _url(legacy))
    status, headers, body = await _raw(
        proxy.server.port,
        (
            "GET /v1/stats HTTP/1.1\r\nHost: example.org\r\nConnection: close, X-Secret\r\n"
            "X-Secret: s\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\n"
            "X-Forwarded-For: 10.0.0.1\r\nAuthorization: Bearer tok-user1\r\nX-Request-Id: r-1\r\n"
        ),
    )
    seen = {k.lower(): v for k, v in orjson.loads(body)["headers"].items()}
    assert 200 == status
    assert not {"x-secret", "proxy-authorization", "te"} & set(seen)
    assert ("10.0.0.1, 127.0.0.1", "r-1", "Bearer tok-user1", "http") == (
        seen["x-forwarded-for"],
        seen["x-request-id"],
        seen["authorization"],
        seen["x-forwarded-proto"],
    )
    assert ("legacy", "kept", None) == (
        headers["x-memshift-served-by"],
        headers.get("x-store-header"),
        headers.get("keep-alive"),
    )


async def test_only_the_configured_store_is_reached(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """An absolute-form target or a //host path still goes to the configured store."""
    legacy = await echo_server(aiohttp_server, _echo)
    proxy, _ = await make_proxy(_url(legacy), _url(legacy))
    for target, expected in (
        ("http://elsewhere.example/v1/stats", "/v1/stats"),
        ("//elsewhere.example/x?y=1", "/elsewhere.example/x?y=1"),
    ):
        status, _, body = await _raw(
            proxy.server.port,
            (f"GET {target} HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n"),
        )
        assert (200, expected) == (status, orjson.loads(body)["path"])


async def test_body_over_the_limit_is_413(aiohttp_server: Any, make_proxy: MakeProxy) -> None:
    """A body over proxy.max_body_mib is refused with a JSON 413 before any store sees it."""
    legacy = await echo_server(aiohttp_server, _echo)
    proxy, _ = await make_proxy(_url(legacy), _url(legacy), sections={"proxy": {"max_body_mib": 1}})
    resp = await proxy.post(
        "/v1/memories",
        data=io.BytesIO(b"x" * (1024 * 1024 + 10)),
        headers={**auth("user1"), "Content-Type": "application/json"},
    )
    assert (413, "payload_too_large") == (resp.status, (await resp.json())["error"]["code"])


async def test_slow_primary_is_504(aiohttp_server: Any, make_proxy: MakeProxy) -> None:
    """A primary slower than its read timeout gives the client a JSON 504."""

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.json_response({})

    legacy = await echo_server(aiohttp_server, slow)
    proxy, _ = await make_proxy(
        _url(legacy), _url(legacy), sections={"stores": {"legacy": {"read_timeout_s": 0.3}}}
    )
    resp = await proxy.get("/v1/stats", headers=auth("user1"))
    assert (504, "upstream_timeout", "legacy") == (
        resp.status,
        (await resp.json())["error"]["code"],
        resp.headers["X-Memshift-Served-By"],
    )


async def test_primary_down_is_502(aiohttp_server: Any, make_proxy: MakeProxy) -> None:
    """A primary that refuses connections is a JSON 502 for reads and writes; nothing mirrors."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    reached: list[str] = []

    async def record(request: web.Request) -> web.Response:
        reached.append(request.path)
        return web.json_response({})

    new = await echo_server(aiohttp_server, record)
    proxy, _ = await make_proxy(closed, _url(new))
    for method in ("GET", "POST"):
        resp = await proxy.request(
            method, "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
        )
        assert (502, "upstream_unavailable") == (resp.status, (await resp.json())["error"]["code"])
    assert [] == reached  # a write the primary did not take is not mirrored


async def test_a_store_cookie_goes_to_its_client_and_never_to_the_next(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """The proxy's sessions towards a store are shared by every caller: they keep no cookie."""
    seen: list[str | None] = []

    async def store(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        answer = web.json_response({"items": [], "next_cursor": None})
        answer.set_cookie("session", f"for-{request.headers.get('Authorization', '')[-5:]}")
        return answer

    legacy = await echo_server(aiohttp_server, store)
    proxy, _ = await make_proxy(_url(legacy), _url(legacy))
    first = await proxy.get("/v1/memories", headers=auth("user1"))
    assert "session=for-user1" in first.headers["Set-Cookie"]
    proxy.session.cookie_jar.clear()  # the second caller is someone else
    await proxy.get("/v1/memories", headers=auth("user2"))
    assert len(seen) >= 2 and {None} == set(seen)  # neither caller's request carried one


@pytest.mark.parametrize("over", [0, 1])
async def test_a_create_at_the_limit_is_mirrored_with_what_memshift_adds(
    make_stack: MakeStack, over: int
) -> None:
    """Both stores take 4 KiB bodies. A create of exactly 4 KiB reaches new with its
    provenance added, over the limit: new takes it (memshift acts for the user), so the
    stores do not diverge. A client's own body one byte over is refused by both."""
    stack = await make_stack(seed=0, store_options={"max_body_bytes": 4096})
    empty = len(b'{"title": "t", "content": ""}')
    body = b'{"title": "t", "content": "' + b"x" * (4096 - empty + over) + b'"}'
    headers = {**auth("user1"), "Content-Type": "application/json"}
    made = await stack.proxy.post("/v1/memories", data=body, headers=headers)
    if over:
        assert 413 == made.status
        direct = await stack.new.post("/v1/memories", data=body, headers=headers)
        assert 413 == direct.status
        return
    assert 201 == made.status, await made.text()
    await drained(stack)
    assert 0 == (await stack.core.writelog.figures())["divergent"]
    await assert_stores_match(stack)


async def test_json_nested_deeper_than_a_store_takes_is_refused_at_the_proxy(
    make_stack: MakeStack,
) -> None:
    """A body the stores would refuse as too deep never reaches them nor the write log:
    on REST and on the MCP endpoint, answered 422 with the stores' own code."""
    stack = await make_stack(seed=0)
    headers = {**auth("user1"), "Content-Type": "application/json"}
    deep = b'{"title": "t", "content": "c", "metadata": ' + b"[" * 300 + b"]" * 300 + b"}"
    made = await stack.proxy.post("/v1/memories", data=deep, headers=headers)
    assert (422, "json_too_deep") == (made.status, (await made.json())["error"]["code"])
    rpc = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": ' + deep + b"}"
    called = await stack.proxy.post(
        "/mcp", data=rpc, headers={**headers, "Accept": "application/json, text/event-stream"}
    )
    assert 422 == called.status
    assert 0 == await stack.core.state_db.read(
        lambda conn: conn.exec_driver_sql("SELECT count(*) FROM writes").scalar_one()
    )
    for store in (stack.legacy, stack.new):
        stats = await (await store.get("/v1/stats", headers=auth("user1"))).json()
        assert 0 == stats["memories"]


async def test_a_gzipped_body_reaches_both_stores_decoded(make_stack: MakeStack) -> None:
    """The proxy decodes a gzip body and forwards it plain (without its Content-Encoding):
    the create is applied on both stores alike. One that is not gzip is a JSON 400."""
    stack = await make_stack(seed=0)
    headers = {**auth("user1"), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    body = gzip.compress(b'{"title": "zipped", "content": "hello"}')
    made = await stack.proxy.post("/v1/memories", data=body, headers=headers)
    assert 201 == made.status, await made.text()
    assert "zipped" == (await made.json())["title"]
    plain = await stack.proxy.post("/v1/memories", data=b'{"title": "x"}', headers=headers)
    assert (400, "bad_body") == (plain.status, (await plain.json())["error"]["code"])
    await drained(stack)
    await assert_stores_match(stack)
    assert 0 == (await stack.core.writelog.figures())["divergent"]


async def test_a_path_with_a_newline_is_forwarded_and_answered_in_json(
    make_stack: MakeStack,
) -> None:
    """%0A in a path reaches the store like any other path (found by the REST fuzz: the
    proxy's own router answered a plain-text 404)."""
    stack = await make_stack(seed=0)
    for path in ("/v1/memories/%0A.h", "/v1/x%0A/y"):
        answer = await stack.proxy.get(path, headers=auth("user1"))
        assert answer.headers["Content-Type"].startswith("application/json")
        assert "legacy" == answer.headers["X-Memshift-Served-By"]
        assert answer.status in (400, 404)

"""MCP through the proxy: the official client, in both protocol eras, to two real stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import orjson
import pytest
from aiohttp import web
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent
from structlog.testing import capture_logs

from mcp import Client
from memshift.mcp import protocol
from memshift.proxy.keys import PROXY
from tests.proxy.conftest import (
    SERVICE,
    MakeForwarder,
    MakeProxy,
    MakeStack,
    Stack,
    auth,
    echo_server,
    helper_did,
    helper_up,
)
from tests.proxy.test_compare import _compared
from tests.proxy.test_workload import TOLERANT, assert_equal_stores, assert_stores_match, drained

ERAS = ["legacy", "auto"]  # 2025 sessions; 2026-07-28 (discovered)


@asynccontextmanager
async def mcp_client(url: str, user: str, mode: str) -> AsyncIterator[Client]:
    """The official client, as a given user, in one protocol era."""
    http = httpx2.AsyncClient(headers=auth(user), timeout=httpx2.Timeout(10.0))
    async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


def mcp_url(stack: Stack) -> str:
    return str(stack.proxy.make_url("/mcp"))


async def call(client: Client, tool: str, **args: Any) -> Any:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result
    return result.structured_content


async def legacy_get(stack: Stack, path: str) -> Any:
    answer = await stack.legacy.get(path, headers=SERVICE)
    return answer.status, await answer.json()


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_are_mirrored_and_ids_are_legacy(make_stack: MakeStack, mode: str) -> None:
    """Create, update, relate, search and delete through MCP; both stores end identical."""
    stack = await make_stack(seed=3, sections=TOLERANT)
    async with mcp_client(mcp_url(stack), "user1", mode) as client:
        expected = "2026-07-28" if mode == "auto" else client.protocol_version
        assert client.protocol_version == expected
        ctx = await call(client, "create_context", name="work")
        first = await call(
            client, "create_memory", title="a", content="alpha beta", context_id=ctx["id"]
        )
        second = await call(client, "create_memory", title="b", content="beta gamma")
        # legacy's ids: the new store was seeded, its ids are three higher
        assert (await legacy_get(stack, f"/v1/memories/{first['id']}"))[1]["title"] == "a"
        assert first["context_id"] == ctx["id"]
        updated = await call(client, "update_memory", memory_id=first["id"], title="a2")
        assert (updated["version"], updated["title"]) == (2, "a2")
        rel = await call(
            client,
            "create_relation",
            name="next",
            source_memory_id=first["id"],
            target_memory_id=second["id"],
        )
        listed = await call(client, "get_memory_relations", memory_id=first["id"])
        assert [r["id"] for r in listed["items"]] == [rel["id"]]
        found = await call(client, "search_memories", query="beta")
        assert {r["id"] for r in found["results"]} == {first["id"], second["id"]}
        await call(client, "delete_memory", memory_id=second["id"])
        missing = await client.call_tool("get_memory", {"memory_id": second["id"]})
        assert missing.is_error
        assert missing.structured_content["error"]["code"] == "not_found"
    await drained(stack)
    await assert_stores_match(stack)
    pair = await stack.core.idmap.translate("memory", {first["id"]}, "legacy", "new")
    assert pair[first["id"]] == first["id"] + 3


async def test_reads_ramp_to_new_and_are_compared(make_stack: MakeStack, helper: bool) -> None:
    """At 100% reads come from new with ids translated back; shadow reads are compared."""
    stack = await make_stack(
        seed=3,
        sections={**TOLERANT, "compare": {"helper": helper}},
        read_percent=100,
        shadow_read_percent=100,
    )
    await helper_up(stack.core, helper)
    async with mcp_client(mcp_url(stack), "user2", "legacy") as client:
        made = await call(client, "create_memory", title="ramp", content="ramped read")
        await drained(stack)
        result = await client.call_tool("get_memory", {"memory_id": made["id"]})
        got = result.structured_content
        assert got["id"] == made["id"]  # legacy's id, though new served it
        text = result.content[0]
        assert isinstance(text, TextContent)
        assert f'"id":{made["id"]}' in text.text  # the text copy too
    await _compared(stack.core)
    routes = {r["route"]: r for r in stack.core.report.document()["routes"]}
    compared = routes["mcp:tools/call get_memory"]
    assert (compared["compared"], compared["mismatched"]) == (1, 0)
    helper_did(stack.core, helper, 1)
    served = stack.core.metrics.sample(
        "memshift_client_requests_total", route="mcp", served_by="new", status_class="2xx"
    )
    assert served >= 1


async def test_store_session_expiring_is_renewed_unseen(make_stack: MakeStack) -> None:
    """A store forgets the client's session mid-conversation; the proxy opens another."""
    stack = await make_stack(
        seed=3,
        sections=TOLERANT,
        store_options={"mcp_session_idle_s": 0.5},
        read_percent=100,
        shadow_read_percent=0,
    )

    def served() -> float:
        return stack.core.metrics.sample(
            "memshift_client_requests_total", route="mcp", served_by="new", status_class="2xx"
        )

    with capture_logs() as logged:
        async with mcp_client(mcp_url(stack), "user3", "legacy") as client:
            made = await call(client, "create_memory", title="s", content="kept")
            await drained(stack)
            before = served()
            assert (await call(client, "get_memory", memory_id=made["id"]))["title"] == "s"
            await asyncio.sleep(1.5)  # new's session for this client expires meanwhile
            assert (await call(client, "get_memory", memory_id=made["id"]))["title"] == "s"
            assert served() == before + 2  # both served by new, no fallback
    events = [e["event"] for e in logged]
    assert "mcp_store_session_expired" in events
    assert stack.core.metrics.read_fallbacks.labels("new_unavailable")._value.get() == 0


async def test_unclassified_tool_goes_to_primary_only(make_stack: MakeStack) -> None:
    """A tool in neither list is served by the primary, not mirrored, and counted."""
    writes = ["create_memory", "update_memory", "delete_memory", "create_relation"]
    stack = await make_stack(seed=0, sections={"mcp": {"write_tools": writes}})
    async with mcp_client(mcp_url(stack), "user4", "legacy") as client:
        made = await call(client, "create_context", name="only-legacy")
    await drained(stack)
    assert (await legacy_get(stack, f"/v1/contexts/{made['id']}"))[0] == 200
    new_contexts = await (await stack.new.get("/v1/contexts", headers=SERVICE)).json()
    assert new_contexts["items"] == []
    counted = stack.core.metrics.mcp_unclassified
    assert counted._value.get() == 1


PROGRESS = {
    "jsonrpc": "2.0",
    "method": "notifications/progress",
    "params": {"progressToken": 1, "progress": 0.5},
}
MODERN = {
    "MCP-Protocol-Version": "2026-07-28",
    "Mcp-Method": "tools/call",
    "Mcp-Name": "get_memory",
    "Accept": protocol.ACCEPT,
    **auth("user5"),
}


async def test_sse_streams_through_and_bogus_replies_are_dropped(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """The client reads the first event while the store is still working on the answer."""
    release = asyncio.Event()

    async def slow_store(request: web.Request) -> web.StreamResponse:
        if request.path != "/mcp":
            return web.json_response({"user": "user5"})
        msg = await request.json()
        if "id" not in msg:  # a notification: this store answers it, against the protocol
            bogus = {"jsonrpc": "2.0", "id": "unknown", "error": {"code": -32600, "message": "?"}}
            return web.json_response(bogus, status=400)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"event: message\ndata: " + orjson.dumps(PROGRESS) + b"\n\n")
        await release.wait()  # finishes only once the client has seen the first event
        doc = {"id": 7, "title": "slow"}
        result = {"content": [{"type": "text", "text": orjson.dumps(doc).decode()}]}
        result["structuredContent"] = doc
        final = {"jsonrpc": "2.0", "id": msg["id"], "result": result}
        await response.write(b"event: message\ndata: " + orjson.dumps(final) + b"\n\n")
        await response.write_eof()
        return response

    stores = [await echo_server(aiohttp_server, slow_store) for _ in range(2)]
    proxy, _admin = await make_proxy(
        *(str(s.make_url("")).rstrip("/") for s in stores), shadow_read_percent=0
    )
    call_body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_memory", "arguments": {"memory_id": 7}},
    }
    async with asyncio.timeout(10):
        answer = await proxy.post("/mcp", json=call_body, headers=MODERN)
        assert answer.headers["Content-Type"].startswith("text/event-stream")
        first = await answer.content.readuntil(b"\n\n")
        assert orjson.loads(first.split(b"data: ", 1)[1]) == PROGRESS
        release.set()
        rest = await answer.read()
    final = orjson.loads(rest.split(b"data: ", 1)[1])
    assert final["result"]["structuredContent"] == {"id": 7, "title": "slow"}
    cancelled = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}}
    notified = await proxy.post("/mcp", json=cancelled, headers=MODERN)
    assert (notified.status, await notified.read()) == (202, b"")


async def test_client_sees_only_the_proxy_session(make_stack: MakeStack) -> None:
    """One proxy session id for the client; DELETE ends both store sessions behind it."""
    stack = await make_stack(seed=0)
    init = protocol.initialize_request("c1")
    headers = {"Accept": protocol.ACCEPT, **auth("user6")}
    answer = await stack.proxy.post("/mcp", json=init, headers=headers)
    assert answer.status == 200
    mine = answer.headers[protocol.SESSION_HEADER]
    behind = await stack.core.sessions.get(mine)
    assert behind is not None
    store_ids = {s.id for s in behind.stores.values() if s is not None}
    assert len(store_ids) == 2 and mine not in store_ids
    session = {
        **headers,
        protocol.SESSION_HEADER: mine,
        protocol.VERSION_HEADER: protocol.HANDSHAKE_VERSION,
    }
    done = await stack.proxy.post("/mcp", json=dict(protocol.INITIALIZED), headers=session)
    assert done.status == 202
    ping = await stack.proxy.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "ping"}, headers=session
    )
    assert ping.status == 200 and mine == ping.headers.get(protocol.SESSION_HEADER, mine)
    assert (await stack.proxy.delete("/mcp", headers=session)).status == 200
    for store, client in (("legacy", stack.legacy), ("new", stack.new)):
        sid = behind.stores[store].id  # type: ignore[union-attr]
        direct = {
            **headers,
            protocol.SESSION_HEADER: sid,
            protocol.VERSION_HEADER: protocol.HANDSHAKE_VERSION,
        }
        gone = await client.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=direct
        )
        assert gone.status == 404, store
    again = await stack.proxy.post(
        "/mcp", json={"jsonrpc": "2.0", "id": 4, "method": "ping"}, headers=session
    )
    assert again.status == 404


async def test_tool_writes_while_new_is_down_are_replayed(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """Tool writes new could not take go to the backlog and reach it, in order, later."""
    stack = await make_stack(seed=2)
    down = True

    async def outage(request: web.Request) -> web.StreamResponse | None:
        if down and request.path == "/mcp":
            return web.json_response({"error": {"code": "down", "message": "down"}}, status=503)
        return None

    faulty = await make_forwarder(str(stack.new.make_url("")).rstrip("/"), outage)
    proxy, _admin = await make_proxy(
        str(stack.legacy.make_url("")).rstrip("/"), faulty, shadow_read_percent=0
    )
    core = proxy.server.app[PROXY]
    async with mcp_client(str(proxy.make_url("/mcp")), "user7", "auto") as client:
        made = await call(client, "create_memory", title="while down", content="x")
        await call(client, "update_memory", memory_id=made["id"], content="y")
    assert (await core.writelog.figures())["backlog"] == 2
    down = False
    async with asyncio.timeout(20):
        while (await core.writelog.figures())["backlog"] or core.writes.jobs.active:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    await assert_equal_stores(stack.legacy, stack.new, core.idmap)
    pair = await core.idmap.translate("memory", {made["id"]}, "legacy", "new")
    copy = await (await stack.new.get(f"/v1/memories/{pair[made['id']]}", headers=SERVICE)).json()
    assert (copy["content"], copy["version"]) == ("y", 2)


async def test_a_session_opened_on_one_instance_is_served_by_another(
    make_stack: MakeStack, make_proxy: MakeProxy, tmp_path: Any
) -> None:
    """Instances (and serve --workers) sharing a state db share client sessions."""
    stack = await make_stack(seed=2)
    second, _ = await make_proxy(
        str(stack.legacy.make_url("")).rstrip("/"),
        str(stack.new.make_url("")).rstrip("/"),
        state_url=f"sqlite:///{tmp_path}/state.db",  # the first proxy's
    )
    headers = {"Accept": protocol.ACCEPT, **auth("user8")}
    opened = await stack.proxy.post("/mcp", json=protocol.initialize_request("c1"), headers=headers)
    assert opened.status == 200
    session = {
        **headers,
        protocol.SESSION_HEADER: opened.headers[protocol.SESSION_HEADER],
        protocol.VERSION_HEADER: protocol.HANDSHAKE_VERSION,
    }
    done = await second.post("/mcp", json=dict(protocol.INITIALIZED), headers=session)
    assert done.status == 202
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "create_memory", "arguments": {"title": "t", "content": "via 2"}},
    }
    answer = await second.post("/mcp", json=call, headers=session)
    assert answer.status == 200
    reply = protocol.response_to(await answer.read(), protocol.is_sse(answer.headers.items()), 7)
    assert reply is not None and not reply["result"].get("isError"), reply
    made = reply["result"]["structuredContent"]
    core = second.server.app[PROXY]
    async with asyncio.timeout(10):
        while core.writes.jobs.active:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    await assert_equal_stores(stack.legacy, stack.new, core.idmap)
    copy = await stack.legacy.get(f"/v1/memories/{made['id']}", headers=auth("user8"))
    assert "via 2" == (await copy.json())["content"]


async def test_a_quiet_standalone_stream_is_kept_open_with_keep_alives(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """A client's GET stream on which the store says nothing for longer than its
    read_timeout_s is not cut: the client gets keep-alive comments, then the event."""
    notice = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}

    async def quiet_store(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await asyncio.sleep(3.5)  # past read_timeout_s (1 s)
        await response.write(b"event: message\ndata: " + orjson.dumps(notice) + b"\n\n")
        await response.write_eof()
        return response

    stores = [await echo_server(aiohttp_server, quiet_store) for _ in range(2)]
    urls = [str(s.make_url("")).rstrip("/") for s in stores]
    proxy, _admin = await make_proxy(
        *urls,
        sections={
            "stores": {"legacy": {"read_timeout_s": 1}, "new": {"read_timeout_s": 1}},
            "mcp": {"keepalive_s": 1},
        },
    )
    async with asyncio.timeout(15):
        answer = await proxy.get("/mcp", headers={"Accept": "text/event-stream"})
        body = await answer.read()
    events = [e for e in body.split(b"\n\n") if e]
    assert 200 == answer.status
    assert events.count(b": keep-alive") >= 2, body
    assert orjson.loads(events[-1].split(b"data: ", 1)[1]) == notice

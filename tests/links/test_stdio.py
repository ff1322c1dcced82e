"""The stdio link: a real child process with real servers' quirks, restarted when it exits."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from structlog.testing import capture_logs

from memshift.config.settings import StoreEndpoint
from memshift.errors import NotSent, OutcomeUnknown
from memshift.links.stdio import StdioStore
from memshift.links.wire import OutboundRequest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StdioStore]:
    endpoint = StoreEndpoint(
        name="new",
        command=(sys.executable, "-m", "tests.doubles.quirky_stdio", str(tmp_path)),
        cwd=str(ROOT),
        identity="none",
        connect_timeout_s=5,
        read_timeout_s=5,
    )
    tasks: list[asyncio.Task[None]] = []
    made = StdioStore(
        endpoint, lambda: "/mcp", lambda coro, _name: tasks.append(asyncio.ensure_future(coro))
    )
    yield made
    await made.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _post(msg: dict[str, Any], path: str = "/mcp") -> OutboundRequest:
    return OutboundRequest("POST", path, (("Content-Type", "application/json"),), orjson.dumps(msg))


def _tool(name: str, rpc_id: Any, **arguments: Any) -> OutboundRequest:
    params = {"name": name, "arguments": arguments}
    return _post({"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": params})


def _echoed(body: bytes) -> Any:
    reply = orjson.loads(body)
    return reply["id"], json.loads(reply["result"]["content"][0]["text"])


async def test_quirks_of_a_real_server_are_tolerated(store: StdioStore, tmp_path: Path) -> None:
    """Noise on stdout, an error reply to a notification, the oldest protocol version, a
    ping from the server, stderr: the calls work, each quirk is logged."""
    with capture_logs() as logs:
        init = {
            "jsonrpc": "2.0",
            "id": "c1",
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "0"},
            },
        }
        answer = await store.request(_post(init))
        result = orjson.loads(answer.body)["result"]
        echoed = await store.request(_tool("echo", "c2", text="hi"))
        await asyncio.sleep(0.2)
    assert (200, "2025-06-18", "quirky") == (
        answer.status,
        result["protocolVersion"],
        result["serverInfo"]["name"],
    )
    assert ("c2", {"echo": {"text": "hi"}, "started": 1}) == _echoed(echoed.body)
    events = {e["event"] for e in logs}
    assert {"stdio_store_noise", "stdio_store_stray_reply", "stdio_store_stderr"} <= events
    ready = next(e for e in logs if e["event"] == "stdio_store_ready")
    assert "2024-11-05" == ready["version"]
    inbound = [json.loads(x) for x in (tmp_path / "inbound.jsonl").read_text().splitlines()]
    assert {"jsonrpc": "2.0", "id": "srv-1", "result": {}} in inbound  # the ping answered


async def test_concurrent_calls_with_one_id_each_get_their_own_answer(store: StdioStore) -> None:
    answers = await asyncio.gather(*(store.request(_tool("slow", 7, n=n)) for n in range(6)))
    assert [(7, {"echo": {"n": n}, "started": 1}) for n in range(6)] == [
        _echoed(a.body) for a in answers
    ]


async def test_a_server_that_exits_is_started_again(store: StdioStore) -> None:
    """The call in flight is of unknown outcome; while the child is down nothing is
    sent; after the backoff it runs again."""
    await store.request(_tool("echo", 1))
    with pytest.raises(OutcomeUnknown):
        await store.request(_tool("die", 2))
    answer = None
    async with asyncio.timeout(20):
        while answer is None:
            try:
                answer = await store.request(_tool("echo", 3))
            except NotSent:
                await asyncio.sleep(0.1)
    assert (3, 2) == (_echoed(answer.body)[0], _echoed(answer.body)[1]["started"])
    assert 1 == store.restarts


async def test_only_mcp_is_served(store: StdioStore) -> None:
    with pytest.raises(NotSent):
        await store.request(_post({}, path="/v1/memories"))
    notification = await store.request(
        _post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {}})
    )
    assert 202 == notification.status

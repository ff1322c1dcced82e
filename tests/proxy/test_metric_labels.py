"""Metric labels come from memshift's closed sets: invented names add no series."""

from __future__ import annotations

import random
import string
from typing import Any

from tests.proxy.conftest import ADMIN, MakeStack, auth

MODERN = {"MCP-Protocol-Version": "2026-07-28", "Accept": "application/json, text/event-stream"}


def _name(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=12))


async def _series(stack: Any) -> int:
    text = await (await stack.admin.get("/metrics", headers=ADMIN)).text()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


async def _invent(stack: Any, rng: random.Random, count: int) -> None:
    headers = {**MODERN, **auth("user1")}
    for n in range(count):
        method = f"{_name(rng)}/{_name(rng)}"
        body = {"jsonrpc": "2.0", "id": n, "method": method, "params": {}}
        await stack.proxy.post("/mcp", json=body, headers=headers)
        call = {"name": _name(rng), "arguments": {}}
        body = {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": call}
        await stack.proxy.post("/mcp", json=body, headers=headers)
        if n % 20 == 0:
            await stack.proxy.request(_name(rng).upper(), f"/{_name(rng)}", headers=headers)


async def test_invented_methods_and_tools_add_no_series(make_stack: MakeStack) -> None:
    """1,000 invented JSON-RPC methods and tool names leave the number of series as it was."""
    stack = await make_stack(seed=0)
    rng = random.Random(7)
    await _invent(stack, rng, 5)  # every closed-set label these requests use now exists
    before = await _series(stack)
    await _invent(stack, rng, 1000)
    assert before == await _series(stack)

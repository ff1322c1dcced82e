"""``memshift verify``: equal stores pass; each missing, extra or different record is named."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from memshift import logs
from memshift.cli import main
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.memories import create_memory, delete_memory, update_memory
from memshift.store.tokens import Principal
from tests.proxy.conftest import USERS, MakeStack
from tests.proxy.test_workload import drained, user_session

ADMIN = Principal("ops", admin=True)


async def _verify(config: Any, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    capsys.readouterr()  # what the stack logged before: not verify's output
    code = await asyncio.to_thread(main, ["verify", "--config", str(config), "--json"])
    return code, orjson.loads(capsys.readouterr().out)


async def test_verify_names_each_difference(
    make_stack: MakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a workload the stores verify equal; changes made behind the proxy are named."""
    logs.configure(level="warning", json=True)  # stdout is for verify's document only
    stack = await make_stack(seed=0)
    await asyncio.gather(
        *(user_session(stack.proxy, u, random.Random(i)) for i, u in enumerate(USERS[:3]))
    )
    await drained(stack)
    code, doc = await _verify(stack.config, capsys)
    assert (0, True) == (code, doc["equal"])
    assert doc["kinds"]["memory"]["checked"] >= 15
    listed = await (
        await stack.legacy.get(
            "/v1/memories?limit=1000", headers={"Authorization": "Bearer tok-svc"}
        )
    ).json()
    first, second = listed["items"][0]["id"], listed["items"][1]["id"]
    pairs = await stack.core.idmap.translate("memory", [first, second], "legacy", "new")
    store = stack.new.server.app[STATE]
    call = Call(ADMIN, store.content)
    store.db.write_sync(lambda conn: delete_memory(conn, call, pairs[first]))
    store.db.write_sync(lambda conn: update_memory(conn, call, pairs[second], {"title": "x"}))
    store.db.write_sync(
        lambda conn: create_memory(conn, call, {"title": "stray", "content": "only in new"})
    )
    code, doc = await _verify(stack.config, capsys)
    memory = doc["kinds"]["memory"]
    assert (1, False, 1, 1, 1) == (
        code,
        doc["equal"],
        memory["missing"],
        memory["extra"],
        memory["differing"],
    )
    problems = {(s["problem"], s.get("id")) for s in memory["samples"]}
    assert {("missing", first), ("differing", second)} <= problems
    differing = next(s for s in memory["samples"] if s["problem"] == "differing")
    assert {"$.title", "$.version"} <= {d["path"] for d in differing["differences"]}

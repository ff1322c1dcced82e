"""Aliased ids: another spelling of an id is that id, on both stores, or it goes nowhere.

The new store holds records of its own, so its ids are shifted against legacy's: a
record's id on legacy names another user's record on new. A client spelling ids with
leading zeros, by REST and by MCP, must reach the same record on both stores (the
primary decides whether it may), and never another user's record on either.
"""

from __future__ import annotations

from typing import Any

from tests.proxy.conftest import SERVICE, MakeStack, auth
from tests.proxy.test_mcp import call, mcp_client, mcp_url
from tests.proxy.test_workload import assert_stores_match, drained

PADDED = "{:019d}"  # 19 digits: past what a 64-bit integer holds


async def _memory(client: Any, memory_id: int | str) -> tuple[int, Any]:
    answer = await client.get(f"/v1/memories/{memory_id}", headers=SERVICE)
    return answer.status, await answer.json()


async def test_zero_padded_ids_reach_the_same_record_on_both_stores(
    make_stack: MakeStack,
) -> None:
    """A user's padded id changes their own record on both stores; a padded id of another
    user's record changes nothing anywhere; a padded read is that record's."""
    stack = await make_stack(seed=3, read_percent=100)  # new: 3 memories of user "seed"
    made = {}
    for user in ("user1", "user2"):
        answer = await stack.proxy.post(
            "/v1/memories", json={"title": f"{user}'s", "content": "x"}, headers=auth(user)
        )
        made[user] = (await answer.json())["id"]
    seeds_before = [await _memory(stack.new, n) for n in (1, 2, 3)]
    mine, theirs = made["user2"], made["user1"]
    assert mine in (1, 2, 3)  # on new, this id is one of the seed user's memories

    answer = await stack.proxy.patch(
        f"/v1/memories/{PADDED.format(mine)}", json={"title": "renamed"}, headers=auth("user2")
    )
    assert 200 == answer.status
    refused = await stack.proxy.patch(
        f"/v1/memories/{PADDED.format(theirs)}", json={"title": "taken"}, headers=auth("user2")
    )
    assert refused.status in (403, 404)
    read = await stack.proxy.get(f"/v1/memories/{PADDED.format(theirs)}", headers=auth("user1"))
    doc = await read.json()
    assert (200, "new", theirs, "user1's") == (
        read.status,
        read.headers["X-Memshift-Served-By"],
        doc["id"],
        doc["title"],
    )

    async with mcp_client(mcp_url(stack), "user2", "legacy") as client:
        result = await client.call_tool(
            "update_memory", {"memory_id": PADDED.format(theirs), "title": "taken by mcp"}
        )
        assert result.is_error
        renamed = await call(client, "get_memory", memory_id=mine)
        assert "renamed" == renamed["title"]
    gone = await stack.proxy.delete(f"/v1/memories/{PADDED.format(mine)}", headers=auth("user2"))
    assert 204 == gone.status
    await drained(stack)

    assert seeds_before == [await _memory(stack.new, n) for n in (1, 2, 3)]
    assert "user1's" == (await _memory(stack.legacy, theirs))[1]["title"]
    assert 404 == (await _memory(stack.legacy, mine))[0]
    await assert_stores_match(stack)

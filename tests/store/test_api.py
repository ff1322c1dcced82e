"""Every REST endpoint of the store, on both engines and both databases."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from tests.store.conftest import ALICE, get, post

Client = TestClient[Any, Any]


async def test_healthz_needs_no_token(store: Client) -> None:
    """/healthz answers without a token."""
    resp = await store.get("/healthz")
    assert 200 == resp.status
    assert {"status": "ok"} == await resp.json()


async def test_context_lifecycle(store: Client) -> None:
    """Contexts are created, read, listed, changed (version + 1) and deleted."""
    made = await post(store, "/v1/contexts", {"name": "work", "description": "job things"})
    assert {
        "name": "work",
        "description": "job things",
        "access_level": "private",
        "owner": "alice",
        "version": 1,
    } == {k: made[k] for k in ("name", "description", "access_level", "owner", "version")}
    assert made == await get(store, f"/v1/contexts/{made['id']}")
    changed = await store.patch(
        f"/v1/contexts/{made['id']}", json={"name": "office"}, headers=ALICE
    )
    body = await changed.json()
    assert (200, "office", 2) == (changed.status, body["name"], body["version"])
    listed = await get(store, "/v1/contexts")
    assert [made["id"]] == [c["id"] for c in listed["items"]]
    assert listed["next_cursor"] is None
    assert 204 == (await store.delete(f"/v1/contexts/{made['id']}", headers=ALICE)).status
    await get(store, f"/v1/contexts/{made['id']}", status=404)


async def test_duplicate_context_name_conflicts(store: Client) -> None:
    """An owner cannot have two contexts of one name (409)."""
    await post(store, "/v1/contexts", {"name": "dup"})
    err = await post(store, "/v1/contexts", {"name": "dup"}, status=409)
    assert "conflict" == err["error"]["code"]


async def test_context_with_memories_cannot_be_deleted(store: Client) -> None:
    """Deleting a context that still holds memories is refused with 409."""
    ctx = await post(store, "/v1/contexts", {"name": "full"})
    await post(store, "/v1/memories", {"title": "t", "content": "c", "context_id": ctx["id"]})
    resp = await store.delete(f"/v1/contexts/{ctx['id']}", headers=ALICE)
    assert (409, "context_not_empty") == (resp.status, (await resp.json())["error"]["code"])


async def test_memory_lifecycle(store: Client) -> None:
    """A memory is created with content, read back, updated (version + 1) and deleted."""
    ctx = await post(store, "/v1/contexts", {"name": "notes"})
    made = await post(
        store,
        "/v1/memories",
        {
            "title": "Groceries",
            "content": "milk and eggs",
            "context_id": ctx["id"],
            "metadata": {"tags": ["home"], "n": 2},
        },
    )
    assert [
        "id",
        "title",
        "content",
        "context_id",
        "access_level",
        "metadata",
        "owner",
        "version",
        "created_at",
        "updated_at",
    ] == list(made)
    assert ("milk and eggs", {"tags": ["home"], "n": 2}, 1) == (
        made["content"],
        made["metadata"],
        made["version"],
    )
    assert made == await get(store, f"/v1/memories/{made['id']}")
    resp = await store.patch(
        f"/v1/memories/{made['id']}",
        json={"content": "milk, eggs and bread", "access_level": "public"},
        headers=ALICE,
    )
    updated = await resp.json()
    assert (200, "milk, eggs and bread", "public", 2) == (
        resp.status,
        updated["content"],
        updated["access_level"],
        updated["version"],
    )
    assert updated["updated_at"] >= made["updated_at"]
    assert updated == await get(store, f"/v1/memories/{made['id']}")
    assert 204 == (await store.delete(f"/v1/memories/{made['id']}", headers=ALICE)).status
    await get(store, f"/v1/memories/{made['id']}", status=404)


async def test_list_memories_pages_without_content(store: Client) -> None:
    """Listing pages through memories in id order with a cursor and never shows content."""
    ctx = await post(store, "/v1/contexts", {"name": "c"})
    ids = [
        (
            await post(
                store,
                "/v1/memories",
                {"title": f"m{i}", "content": "x" * 50, "context_id": ctx["id"] if i % 2 else None},
            )
        )["id"]
        for i in range(7)
    ]
    seen: list[int] = []
    cursor = ""
    while True:
        page = await get(store, f"/v1/memories?limit=3&cursor={cursor}")
        assert all("content" not in item for item in page["items"])
        seen += [item["id"] for item in page["items"]]
        if page["next_cursor"] is None:
            break
        cursor = page["next_cursor"]
    assert ids == seen
    in_ctx = await get(store, f"/v1/memories?context_id={ctx['id']}")
    assert ids[1::2] == [item["id"] for item in in_ctx["items"]]


async def test_relations(store: Client) -> None:
    """Relations link two memories, are listed for either end, and go when a memory goes."""
    a = await post(store, "/v1/memories", {"title": "a", "content": "alpha"})
    b = await post(store, "/v1/memories", {"title": "b", "content": "beta"})
    rel = await post(
        store,
        "/v1/relations",
        {"name": "cites", "source_id": a["id"], "target_id": b["id"], "strength": 0.5},
    )
    assert ("cites", a["id"], b["id"], 0.5, "alice") == (
        rel["name"],
        rel["source_id"],
        rel["target_id"],
        rel["strength"],
        rel["owner"],
    )
    assert [rel] == (await get(store, f"/v1/memories/{a['id']}/relations"))["items"]
    assert [rel] == (await get(store, f"/v1/memories/{b['id']}/relations"))["items"]
    assert rel == await get(store, f"/v1/relations/{rel['id']}")
    await store.delete(f"/v1/memories/{b['id']}", headers=ALICE)
    assert [] == (await get(store, f"/v1/memories/{a['id']}/relations"))["items"]
    await get(store, f"/v1/relations/{rel['id']}", status=404)


async def test_delete_relation(store: Client) -> None:
    """A relation can be deleted by its owner."""
    a = await post(store, "/v1/memories", {"title": "a", "content": "alpha"})
    rel = await post(
        store, "/v1/relations", {"name": "self", "source_id": a["id"], "target_id": a["id"]}
    )
    assert 1.0 == rel["strength"]
    assert 204 == (await store.delete(f"/v1/relations/{rel['id']}", headers=ALICE)).status
    assert [] == (await get(store, f"/v1/memories/{a['id']}/relations"))["items"]


async def test_search_ranks_and_snippets(store: Client) -> None:
    """Search needs every term, ranks title hits higher, and returns a snippet around a hit."""
    await post(
        store,
        "/v1/memories",
        {"title": "Sourdough bread", "content": "Feed the starter, then bake the bread."},
    )
    await post(
        store,
        "/v1/memories",
        {"title": "Bike repair", "content": "Patch the tube. Bread crumbs in the bag."},
    )
    await post(store, "/v1/memories", {"title": "Other", "content": "nothing relevant"})
    found = await get(store, "/v1/search?q=bread")
    assert 2 == found["total"]
    assert ["Sourdough bread", "Bike repair"] == [r["title"] for r in found["results"]]
    assert found["results"][0]["score"] > found["results"][1]["score"]
    assert "Bread crumbs" in found["results"][1]["snippet"]
    both = await get(store, "/v1/search?q=bread+starter")
    assert ["Sourdough bread"] == [r["title"] for r in both["results"]]
    assert {"results": [], "total": 0} == await get(store, "/v1/search?q=nonexistentword")
    assert 1 == len((await get(store, "/v1/search?q=bread&limit=1"))["results"])


async def test_search_in_context(store: Client) -> None:
    """context_id narrows search to one context."""
    ctx = await post(store, "/v1/contexts", {"name": "k"})
    inside = await post(
        store, "/v1/memories", {"title": "in", "content": "kiwi", "context_id": ctx["id"]}
    )
    await post(store, "/v1/memories", {"title": "out", "content": "kiwi"})
    found = await get(store, f"/v1/search?q=kiwi&context_id={ctx['id']}")
    assert [inside["id"]] == [r["id"] for r in found["results"]]


async def test_stats(store: Client) -> None:
    """Stats count records and the UTF-8 size of live content."""
    await post(store, "/v1/contexts", {"name": "s"})
    a = await post(store, "/v1/memories", {"title": "a", "content": "héllo"})
    await post(store, "/v1/memories", {"title": "b", "content": "x" * 10})
    await post(store, "/v1/relations", {"name": "r", "source_id": a["id"], "target_id": a["id"]})
    stats = await get(store, "/v1/stats")
    assert {"memories": 2, "contexts": 1, "relations": 1, "logical_bytes": 16} == {
        k: stats[k] for k in ("memories", "contexts", "relations", "logical_bytes")
    }
    assert stats["stored_bytes"] > 0


async def test_unknown_route_and_method_are_json(store: Client) -> None:
    """An unknown path is a JSON 404 and a wrong method a JSON 405."""
    missing = await store.get("/v1/nope", headers=ALICE)
    assert (404, "not_found") == (missing.status, (await missing.json())["error"]["code"])
    wrong = await store.put("/v1/memories", headers=ALICE)
    assert (405, "method_not_allowed") == (wrong.status, (await wrong.json())["error"]["code"])


async def test_ids_are_never_reused(store: Client) -> None:
    """Deleting the newest record does not free its id for the next one."""
    for path, body in (
        ("/v1/memories", {"title": "t", "content": "c"}),
        ("/v1/contexts", {"name": "n"}),
    ):
        first = await post(store, path, body if "title" in body else {"name": "a"})
        second = await post(store, path, body)
        assert 204 == (await store.delete(f"{path}/{second['id']}", headers=ALICE)).status
        third = await post(store, path, body)
        assert [first["id"] + 1, first["id"] + 2] == [second["id"], third["id"]]

"""Tokens, visibility and ownership rules of the store."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.store.conftest import ALICE, BOB, OPS, get, post

Client = TestClient[Any, Any]


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dG9rLWFsaWNl", "tok-alice"])
async def test_missing_or_unknown_token_is_401(store: Client, header: str | None) -> None:
    """Without a known bearer token every API call is refused with 401."""
    headers = {"Authorization": header} if header else {}
    resp = await store.get("/v1/memories", headers=headers)
    assert (401, "unauthorized") == (resp.status, (await resp.json())["error"]["code"])
    assert "Bearer" == resp.headers["WWW-Authenticate"]


async def test_private_records_are_hidden_from_others(store: Client) -> None:
    """Another user's private memory is 404 to read, absent from lists, search and stats."""
    mine = await post(store, "/v1/memories", {"title": "secret", "content": "diary entry"})
    await get(store, f"/v1/memories/{mine['id']}", headers=BOB, status=404)
    assert [] == (await get(store, "/v1/memories", headers=BOB))["items"]
    assert 0 == (await get(store, "/v1/search?q=diary", headers=BOB))["total"]
    assert 0 == (await get(store, "/v1/stats", headers=BOB))["memories"]
    resp = await store.patch(f"/v1/memories/{mine['id']}", json={"title": "x"}, headers=BOB)
    assert 404 == resp.status


async def test_public_records_are_visible_but_not_writable(store: Client) -> None:
    """A public memory is readable by anyone; only its owner may change it (403)."""
    shared = await post(
        store, "/v1/memories", {"title": "recipe", "content": "pancakes", "access_level": "public"}
    )
    assert shared == await get(store, f"/v1/memories/{shared['id']}", headers=BOB)
    resp = await store.patch(f"/v1/memories/{shared['id']}", json={"title": "x"}, headers=BOB)
    assert (403, "forbidden") == (resp.status, (await resp.json())["error"]["code"])
    resp = await store.delete(f"/v1/memories/{shared['id']}", headers=BOB)
    assert 403 == resp.status
    assert 1 == (await get(store, "/v1/search?q=pancakes", headers=BOB))["total"]


async def test_relation_needs_visible_memories(store: Client) -> None:
    """A relation to a memory the caller cannot see is refused (422 unknown_memory)."""
    hidden = await post(store, "/v1/memories", {"title": "h", "content": "h"})
    own = await post(store, "/v1/memories", {"title": "o", "content": "o"}, headers=BOB)
    err = await post(
        store,
        "/v1/relations",
        {"name": "x", "source_id": own["id"], "target_id": hidden["id"]},
        headers=BOB,
        status=422,
    )
    assert ("unknown_memory", True) == (
        err["error"]["code"],
        err["error"]["message"].startswith("target_id"),
    )


async def test_a_relation_to_a_private_memory_stays_private(store: Client) -> None:
    """Bob relates nothing of Alice's: once Bob has a relation of his own, Alice's
    relation between his public memory and her private one is still not his to see,
    list or delete (each 404)."""
    public = await post(
        store, "/v1/memories", {"title": "p", "content": "c", "access_level": "public"}, BOB
    )
    private = await post(store, "/v1/memories", {"title": "q", "content": "c"})
    hers = await post(
        store, "/v1/relations", {"name": "r", "source_id": public["id"], "target_id": private["id"]}
    )
    his = await post(
        store,
        "/v1/relations",
        {"name": "s", "source_id": public["id"], "target_id": public["id"]},
        BOB,
    )
    listed = await get(store, f"/v1/memories/{public['id']}/relations", BOB)
    assert [his["id"]] == [r["id"] for r in listed["items"]]
    await get(store, f"/v1/relations/{hers['id']}", BOB, status=404)
    deleted = await store.delete(f"/v1/relations/{hers['id']}", headers=BOB)
    assert 404 == deleted.status
    assert 2 == len((await get(store, f"/v1/memories/{public['id']}/relations"))["items"])


async def test_admin_sees_everything_and_sets_provenance(store: Client) -> None:
    """An admin sees every record and may set owner, version and timestamps on create."""
    await post(store, "/v1/memories", {"title": "a", "content": "alice's"})
    copied = await post(
        store,
        "/v1/memories",
        {
            "title": "copied",
            "content": "from legacy",
            "owner": "bob",
            "version": 7,
            "created_at": "2024-01-02T03:04:05.000006Z",
            "updated_at": "2024-02-03T04:05:06+00:00",
        },
        headers=OPS,
    )
    assert ("bob", 7, "2024-01-02T03:04:05.000006Z", "2024-02-03T04:05:06.000000Z") == (
        copied["owner"],
        copied["version"],
        copied["created_at"],
        copied["updated_at"],
    )
    assert copied == await get(store, f"/v1/memories/{copied['id']}", headers=BOB)
    assert 2 == len((await get(store, "/v1/memories", headers=OPS))["items"])
    ctx = await post(store, "/v1/contexts", {"name": "n", "owner": "bob"}, headers=OPS)
    assert "bob" == ctx["owner"]


@pytest.mark.parametrize(
    "field,value", [("owner", "bob"), ("version", 3), ("created_at", "2024-01-01T00:00:00Z")]
)
async def test_only_admin_sets_provenance(store: Client, field: str, value: Any) -> None:
    """A user who sets owner, version or a timestamp is refused with 422 naming the field."""
    err = await post(
        store, "/v1/memories", {"title": "t", "content": "c", field: value}, status=422
    )
    assert err["error"]["message"].startswith(field)
    assert 0 == (await get(store, "/v1/stats", headers=ALICE))["memories"]


async def test_admin_repairs_provenance_with_a_patch(store: Client) -> None:
    """An admin's PATCH may set owner, version and timestamps (repair); a user's may not."""
    made = await post(store, "/v1/memories", {"title": "a", "content": "alice's"})
    stamps = {"version": 9, "updated_at": "2024-02-03T04:05:06.000000Z", "owner": "bob"}
    resp = await store.patch(
        f"/v1/memories/{made['id']}", json={"title": "fixed", **stamps}, headers=OPS
    )
    fixed = await resp.json()
    assert ("fixed", 9, "2024-02-03T04:05:06.000000Z", "bob") == (
        fixed["title"],
        fixed["version"],
        fixed["updated_at"],
        fixed["owner"],
    )
    ctx = await post(store, "/v1/contexts", {"name": "n"})
    resp = await store.patch(f"/v1/contexts/{ctx['id']}", json={"version": 5}, headers=OPS)
    assert 5 == (await resp.json())["version"]
    resp = await store.patch(f"/v1/contexts/{ctx['id']}", json={"version": 6}, headers=ALICE)
    assert 422 == resp.status
    plain = await store.patch(f"/v1/contexts/{ctx['id']}", json={"name": "m"}, headers=OPS)
    assert 6 == (await plain.json())["version"]  # without stamps, the usual bump


async def test_whoami_names_the_caller(store: Client) -> None:
    """GET /v1/whoami answers the token's user and role."""
    assert {"user": "alice", "role": "user"} == await get(store, "/v1/whoami")
    assert {"user": "ops", "role": "admin"} == await get(store, "/v1/whoami", headers=OPS)


async def test_an_admin_acts_as_a_user(store: Client) -> None:
    """With X-Act-As an admin writes as that user: owner and Idempotency-Key are the user's."""
    body = b'{"title": "t", "content": "c"}'
    json_type = {"Content-Type": "application/json", "Idempotency-Key": "k"}
    first = await store.post(
        "/v1/memories", data=body, headers={**OPS, **json_type, "X-Act-As": "bob"}
    )
    made = await first.json()
    assert (201, "bob") == (first.status, made["owner"])
    again = await store.post("/v1/memories", data=body, headers={**BOB, **json_type})
    assert (made, "true") == (await again.json(), again.headers["Idempotent-Replayed"])
    refused = await store.get("/v1/stats", headers={**ALICE, "X-Act-As": "bob"})
    assert (403, "forbidden") == (refused.status, (await refused.json())["error"]["code"])

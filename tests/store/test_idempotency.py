"""Idempotency-Key: a repeat returns the first answer and applies nothing again."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient

from tests.store.conftest import ALICE, BOB, get

Client = TestClient[Any, Any]


def keyed(key: str, who: dict[str, str] = ALICE) -> dict[str, str]:
    return {**who, "Idempotency-Key": key}


async def test_repeated_create_applies_once(store: Client) -> None:
    """The same POST with the same key creates one memory and answers the same twice."""
    body = {"title": "once", "content": "only once"}
    first = await store.post("/v1/memories", json=body, headers=keyed("k-1"))
    again = await store.post("/v1/memories", json=body, headers=keyed("k-1"))
    assert (201, 201) == (first.status, again.status)
    assert await first.json() == await again.json()
    assert "true" == again.headers["Idempotent-Replayed"]
    assert "Idempotent-Replayed" not in first.headers
    assert 1 == (await get(store, "/v1/stats"))["memories"]


async def test_repeated_patch_bumps_version_once(store: Client) -> None:
    """A repeated PATCH under one key raises the version once."""
    made = await (
        await store.post("/v1/memories", json={"title": "t", "content": "c"}, headers=ALICE)
    ).json()
    for _ in range(3):
        resp = await store.patch(
            f"/v1/memories/{made['id']}", json={"title": "t2"}, headers=keyed("p-1")
        )
        assert 2 == (await resp.json())["version"]
    assert 2 == (await get(store, f"/v1/memories/{made['id']}"))["version"]


async def test_repeated_delete_answers_204(store: Client) -> None:
    """A repeated DELETE under one key answers 204 again, not 404."""
    made = await (
        await store.post("/v1/memories", json={"title": "t", "content": "c"}, headers=ALICE)
    ).json()
    path = f"/v1/memories/{made['id']}"
    assert 204 == (await store.delete(path, headers=keyed("d-1"))).status
    assert 204 == (await store.delete(path, headers=keyed("d-1"))).status
    assert 404 == (await store.delete(path, headers=ALICE)).status


async def test_key_reused_for_another_request_is_refused(store: Client) -> None:
    """A key reused with a different body is refused with 422 and applies nothing."""
    await store.post("/v1/memories", json={"title": "a", "content": "a"}, headers=keyed("r-1"))
    resp = await store.post(
        "/v1/memories", json={"title": "b", "content": "b"}, headers=keyed("r-1")
    )
    assert (422, "idempotency_key_reused") == (resp.status, (await resp.json())["error"]["code"])
    assert 1 == (await get(store, "/v1/stats"))["memories"]


async def test_keys_are_scoped_to_the_caller(store: Client) -> None:
    """Two users using the same key each get their own write."""
    body = {"title": "t", "content": "c"}
    a = await (await store.post("/v1/memories", json=body, headers=keyed("same"))).json()
    b = await (await store.post("/v1/memories", json=body, headers=keyed("same", BOB))).json()
    assert ("alice", "bob") == (a["owner"], b["owner"])
    assert a["id"] != b["id"]


async def test_concurrent_repeats_apply_once(store: Client) -> None:
    """Ten concurrent POSTs with one key create exactly one memory."""
    body = {"title": "race", "content": "race"}
    answers = await asyncio.gather(
        *(store.post("/v1/memories", json=body, headers=keyed("c-1")) for _ in range(10))
    )
    ids = {(await r.json())["id"] for r in answers}
    assert ({201}, 1) == ({r.status for r in answers}, len(ids))
    assert 1 == (await get(store, "/v1/stats"))["memories"]


async def test_failed_write_does_not_burn_the_key(store: Client) -> None:
    """A refused write stores nothing under its key: repeating it is refused again, not replayed."""
    bad = await store.post("/v1/memories", json={"title": ""}, headers=keyed("f-1"))
    assert 422 == bad.status
    again = await store.post("/v1/memories", json={"title": ""}, headers=keyed("f-1"))
    assert 422 == again.status
    assert "Idempotent-Replayed" not in again.headers


async def test_bad_key_is_refused(store: Client) -> None:
    """A key that is too long or not printable ASCII is refused with 400."""
    resp = await store.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=keyed("x" * 300)
    )
    assert (400, "invalid_idempotency_key") == (resp.status, (await resp.json())["error"]["code"])

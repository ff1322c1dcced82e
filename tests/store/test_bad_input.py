"""Every kind of bad input gets a JSON error with a fitting 4xx and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.store.conftest import ALICE, MakeStore, get, post

Client = TestClient[Any, Any]
JSON = {**ALICE, "Content-Type": "application/json"}

BAD_BODIES = [
    (b'{"title": "t", "content":', JSON, 400, "malformed_json"),
    (b'{"title": "t", "content": NaN}', JSON, 400, "malformed_json"),
    (b"", JSON, 400, "empty_body"),
    (b'{"title": "\xff\xfe", "content": "c"}', JSON, 400, "invalid_utf8"),
    (
        b'{"title": "t", "content": "c"}',
        {**ALICE, "Content-Type": "text/plain"},
        415,
        "unsupported_media_type",
    ),
    (
        b'{"title": "t", "content": "c"}',
        {**ALICE, "Content-Type": "application/json; charset=latin-1"},
        415,
        "unsupported_media_type",
    ),
    (b'["title", "content"]', JSON, 422, "validation_error"),
    (b'{"content": "c"}', JSON, 422, "validation_error"),
    (b'{"title": 5, "content": "c"}', JSON, 422, "validation_error"),
    (b'{"title": "", "content": "c"}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": null}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "color": "red"}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "access_level": "secret"}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "metadata": [1]}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "context_id": "1"}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "context_id": true}', JSON, 422, "validation_error"),
    (b'{"title": "t", "content": "c", "context_id": 999}', JSON, 422, "unknown_context"),
]


@pytest.mark.parametrize("body,headers,status,code", BAD_BODIES)
async def test_bad_memory_bodies(
    store: Client, body: bytes, headers: dict[str, str], status: int, code: str
) -> None:
    """A bad create body is refused with the documented status and code; nothing is stored."""
    resp = await store.post("/v1/memories", data=body, headers=headers)
    payload = await resp.json()
    assert (status, code) == (resp.status, payload["error"]["code"])
    assert payload["error"]["message"]
    assert 0 == (await get(store, "/v1/stats"))["memories"]


@pytest.mark.parametrize(
    "path,code",
    [
        ("/v1/memories/abc", "invalid_id"),
        ("/v1/memories/-1", "invalid_id"),
        ("/v1/memories/0", "invalid_id"),
        ("/v1/memories/99999999999999999999", "invalid_id"),
        ("/v1/memories/1.5", "invalid_id"),
        ("/v1/contexts/x", "invalid_id"),
        ("/v1/memories?limit=0", "invalid_limit"),
        ("/v1/memories?limit=5000", "invalid_limit"),
        ("/v1/memories?limit=ten", "invalid_limit"),
        ("/v1/memories?cursor=%%%", "invalid_cursor"),
        ("/v1/memories?cursor=Zm9vOmJhcg", "invalid_cursor"),
        ("/v1/memories?context_id=x", "invalid_context_id"),
        ("/v1/search", "invalid_q"),
        ("/v1/search?q=%20", "invalid_q"),
        ("/v1/search?q=a&limit=1000", "invalid_limit"),
    ],
)
async def test_bad_paths_and_queries(store: Client, path: str, code: str) -> None:
    """Ids that are not positive integers and bad query parameters are 400 with a code."""
    resp = await store.get(path, headers=ALICE)
    assert (400, code) == (resp.status, (await resp.json())["error"]["code"])


async def test_unknown_context_filter_is_422(store: Client) -> None:
    """Listing or searching in a context that does not exist is 422 unknown_context."""
    for path in ("/v1/memories?context_id=42", "/v1/search?q=x&context_id=42"):
        assert "unknown_context" == (await get(store, path, status=422))["error"]["code"]


async def test_bad_update_changes_nothing(store: Client) -> None:
    """A refused PATCH leaves the record and its version as they were."""
    made = await post(store, "/v1/memories", {"title": "t", "content": "c"})
    for body in ({}, {"title": None}, {"version": 9}, {"context_id": 77}):
        resp = await store.patch(f"/v1/memories/{made['id']}", json=body, headers=ALICE)
        assert 422 == resp.status
    assert made == await get(store, f"/v1/memories/{made['id']}")


async def test_bad_relation_strength(store: Client) -> None:
    """Strength outside 0..1 is refused."""
    m = await post(store, "/v1/memories", {"title": "t", "content": "c"})
    for strength in (-0.1, 1.5, "high"):
        await post(
            store,
            "/v1/relations",
            {"name": "r", "source_id": m["id"], "target_id": m["id"], "strength": strength},
            status=422,
        )
    assert 0 == (await get(store, "/v1/stats"))["relations"]


async def test_body_over_the_limit_is_413(make_store: MakeStore, tmp_path: Any) -> None:
    """A body over the configured limit is refused with a JSON 413 and nothing stored."""
    store = await make_store("new", f"sqlite:///{tmp_path}/s.db", max_body_bytes=4096)
    resp = await store.post(
        "/v1/memories", json={"title": "big", "content": "x" * 8000}, headers=ALICE
    )
    assert (413, "payload_too_large") == (resp.status, (await resp.json())["error"]["code"])
    assert 0 == (await get(store, "/v1/stats"))["memories"]

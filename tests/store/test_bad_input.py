"""Every kind of bad input gets a JSON error with a fitting 4xx and changes nothing."""

from __future__ import annotations

import gzip
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
    (b'{"title": "t", "content": "c", "context_id": 2147483648}', JSON, 422, "validation_error"),
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
        # past the id columns' range (32 bits on PostgreSQL): the same 400 on both
        ("/v1/memories/2147483648", "invalid_id"),
        ("/v1/search?q=a&context_id=9223372036854775806", "invalid_context_id"),
        ("/v1/memories?context_id=2147483648", "invalid_context_id"),
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


def _nested(depth: int) -> bytes:
    """A memory whose metadata nests ``depth`` objects deep, as JSON text."""
    return (
        b'{"title": "t", "content": "c", "metadata": '
        + b'{"a": ' * (depth - 1)
        + b"{}"
        + b"}" * (depth - 1)
        + b"}"
    )


@pytest.mark.parametrize("depth", [64, 255, 1024, 5000])
async def test_json_nested_too_deep_is_422(store: Client, depth: int) -> None:
    """Metadata nested past the limit is refused 422 on create and update, never a 500."""
    resp = await store.post("/v1/memories", data=_nested(depth), headers=JSON)
    assert (422, "json_too_deep") == (resp.status, (await resp.json())["error"]["code"])
    made = await post(store, "/v1/memories", {"title": "t", "content": "c"})
    resp = await store.patch(f"/v1/memories/{made['id']}", data=_nested(depth), headers=JSON)
    assert (422, "json_too_deep") == (resp.status, (await resp.json())["error"]["code"])
    assert {} == (await get(store, f"/v1/memories/{made['id']}"))["metadata"]


async def test_json_as_deep_as_the_limit_is_taken(store: Client) -> None:
    """A document exactly at the limit is stored and read back whole."""
    resp = await store.post("/v1/memories", data=_nested(62), headers=JSON)
    made = await resp.json()
    assert 201 == resp.status, made
    again = await get(store, f"/v1/memories/{made['id']}")
    assert made["metadata"] == again["metadata"]


async def test_json_too_deep_over_mcp_is_refused(store: Client) -> None:
    """The MCP endpoint refuses the same document before the SDK or a tool sees it."""
    call = (
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": '
        b'"create_memory", "arguments": ' + _nested(100) + b"}}"
    )
    headers = {**JSON, "Accept": "application/json, text/event-stream"}
    resp = await store.post("/mcp", data=call, headers=headers)
    assert (422, "json_too_deep") == (resp.status, (await resp.json())["error"]["code"])
    assert 0 == (await get(store, "/v1/stats"))["memories"]


@pytest.mark.parametrize(
    "encoding,body,status,code",
    [
        ("gzip", b'{"title": "t", "content": "c"}', 400, "bad_body"),
        ("deflate", b'{"title": "t", "content": "c"}', 400, "bad_body"),
        ("gzip", gzip.compress(b'{"title": "t", "content": "c"}'), 201, None),
        ("bogus", b'{"title": "t", "content": "c"}', 415, "unsupported_encoding"),
        ("gzip, gzip", b'{"title": "t", "content": "c"}', 415, "unsupported_encoding"),
    ],
)
async def test_content_encodings(
    store: Client, encoding: str, body: bytes, status: int, code: str | None
) -> None:
    """A body in an encoding that cannot be read is a JSON 400/415; gzip that is gzip works."""
    resp = await store.post(
        "/v1/memories", data=body, headers={**JSON, "Content-Encoding": encoding}
    )
    payload = await resp.json()
    assert status == resp.status, payload
    if code:
        assert code == payload["error"]["code"]
    assert (0 if code else 1) == (await get(store, "/v1/stats"))["memories"]

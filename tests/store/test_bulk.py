"""Bulk export, lookup and import: every record out in id order, a batch in at once."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from memshift.store.bulk import digest_of
from tests.store.conftest import ALICE, OPS, MakeStore, get, post

BIG = "zstd likes repeated words " * 4000  # compressed and chunked by new


async def lines(client: TestClient[Any, Any], path: str) -> list[dict[str, Any]]:
    resp = await client.get(path, headers=OPS)
    assert 200 == resp.status, await resp.text()
    assert resp.content_type == "application/x-ndjson"
    found = [orjson.loads(line) for line in (await resp.read()).splitlines()]
    assert found[-1]["end"] is True and found[-1]["count"] == len(found) - 1
    return found[:-1]


async def seed(client: TestClient[Any, Any]) -> dict[str, Any]:
    context = await post(client, "/v1/contexts", {"name": "work"})
    made = [
        await post(
            client,
            "/v1/memories",
            {"title": f"m{i}", "content": text, "context_id": context["id"], "metadata": {"i": i}},
        )
        for i, text in enumerate(["short", BIG, "café ✓"])
    ]
    relation = await post(
        client,
        "/v1/relations",
        {"name": "r", "source_id": made[0]["id"], "target_id": made[1]["id"]},
    )
    return {"context": context, "memories": made, "relation": relation}


async def test_export_streams_records_in_id_order_with_digests(store: TestClient[Any, Any]) -> None:
    made = await seed(store)
    full = await lines(store, "/v1/bulk/export/memory")
    assert [m["id"] for m in made["memories"]] == [m["id"] for m in full]
    for line, record in zip(full, made["memories"], strict=True):
        assert {k: v for k, v in line.items() if k != "digest"} == record
    short = await lines(store, "/v1/bulk/export/memory?content=false")
    assert all(set(s) == {"id", "context_id", "version", "digest"} for s in short)
    assert [s["digest"] for s in short] == [f["digest"] for f in full]
    # Pages: after and limit walk the same order.
    first = await lines(store, "/v1/bulk/export/memory?content=false&limit=2")
    rest = await lines(store, f"/v1/bulk/export/memory?content=false&after={first[-1]['id']}")
    assert first + rest == short
    rels = await lines(store, "/v1/bulk/export/relation?content=false")
    relation = made["relation"]
    assert [(relation["id"], relation["source_id"], relation["target_id"])] == [
        (r["id"], r["source_id"], r["target_id"]) for r in rels
    ]
    # Without digests: ids, references and versions, for walks that need only those.
    thin = await lines(store, "/v1/bulk/export/memory?content=false&digest=false")
    assert [{k: v for k, v in s.items() if k != "digest"} for s in short] == thin
    thin_rels = await lines(store, "/v1/bulk/export/relation?content=false&digest=false")
    assert [{k: v for k, v in r.items() if k != "digest"} for r in rels] == thin_rels
    bare = await lines(store, "/v1/bulk/export/memory?digest=false")
    assert made["memories"] == bare


async def test_digests_agree_across_engines_and_change_with_the_record(
    make_store: MakeStore, db_url: str, tmp_path: Any
) -> None:
    """Records copied by import from a legacy store to a new one have the same digests
    (new hashes nothing: its blob address is the content's SHA-256); a change moves it."""
    legacy = await make_store("legacy", db_url)
    new = await make_store("new", f"sqlite:///{tmp_path}/new.db")
    await seed(legacy)
    pairs: dict[str, dict[int, int]] = {"context": {}, "memory": {}}
    refs = {
        "memory": {"context_id": "context"},
        "relation": {"source_id": "memory", "target_id": "memory"},
    }
    for kind in ("context", "memory", "relation"):
        records = await lines(legacy, f"/v1/bulk/export/{kind}")
        batch = []
        for line in records:
            record = {k: v for k, v in line.items() if k not in ("id", "digest")}
            for name, other in refs.get(kind, {}).items():
                record[name] = pairs[other][record[name]]
            batch.append({"key": f"copy-{kind}-{line['id']}", "record": record})
        made = await post(new, f"/v1/bulk/import/{kind}", {"records": batch}, OPS, 200)
        pairs[kind] = {r["id"]: m["id"] for r, m in zip(records, made["items"], strict=True)}
        a = await lines(legacy, f"/v1/bulk/export/{kind}?content=false")
        b = await lines(new, f"/v1/bulk/export/{kind}?content=false")
        assert [x["digest"] for x in a] == [x["digest"] for x in b], kind
    memory = (await lines(new, "/v1/bulk/export/memory?content=false"))[1]
    resp = await new.patch(f"/v1/memories/{memory['id']}", json={"content": BIG + "!"}, headers=OPS)
    assert 200 == resp.status
    moved = (await lines(new, "/v1/bulk/export/memory?content=false"))[1]
    assert moved["digest"] != memory["digest"]
    assert len(memory["digest"]) == 64 and digest_of({}) != memory["digest"]


async def test_lookup_answers_the_listed_records_that_exist(store: TestClient[Any, Any]) -> None:
    made = await seed(store)
    ids = [m["id"] for m in made["memories"]]
    found = await post(store, "/v1/bulk/lookup/memory", {"ids": [ids[2], 999, ids[0]]}, OPS, 200)
    assert [ids[0], ids[2]] == [i["id"] for i in found["items"]]
    assert "content" not in found["items"][0]
    full = await post(store, "/v1/bulk/lookup/memory", {"ids": ids, "content": True}, OPS, 200)
    assert BIG == full["items"][1]["content"]
    thin = await post(store, "/v1/bulk/lookup/memory", {"ids": ids, "digest": False}, OPS, 200)
    assert [
        {"id": m["id"], "context_id": m["context_id"], "version": m["version"]}
        for m in made["memories"]
    ] == thin["items"]


async def test_import_creates_a_batch_once_per_key(store: TestClient[Any, Any]) -> None:
    context = await post(store, "/v1/contexts", {"name": "target"})
    records = [
        {
            "key": f"copy-{i}",
            "record": {
                "title": f"imported {i}",
                "content": BIG if i == 1 else f"text {i}",
                "context_id": context["id"],
                "owner": "bob",
                "version": 7,
                "created_at": "2020-01-02T03:04:05.000006Z",
                "updated_at": "2021-01-02T03:04:05Z",
            },
        }
        for i in range(3)
    ]
    first = await post(store, "/v1/bulk/import/memory", {"records": records}, OPS, 200)
    assert [False] * 3 == [i["replayed"] for i in first["items"]]
    again = await post(store, "/v1/bulk/import/memory", {"records": records}, OPS, 200)
    assert [i["id"] for i in first["items"]] == [i["id"] for i in again["items"]]
    assert [True] * 3 == [i["replayed"] for i in again["items"]]
    copy = await get(store, f"/v1/memories/{first['items'][1]['id']}", OPS)
    assert (BIG, "bob", 7, "2020-01-02T03:04:05.000006Z") == (
        copy["content"],
        copy["owner"],
        copy["version"],
        copy["created_at"],
    )
    # The same key sent one record at a time is the same record: one keyspace.
    one = records[0]
    resp = await store.post(
        "/v1/memories",
        data=orjson.dumps(one["record"]),
        headers={**OPS, "Idempotency-Key": one["key"], "Content-Type": "application/json"},
    )
    assert (201, first["items"][0]["id"]) == (resp.status, (await resp.json())["id"])
    hits = await get(store, "/v1/search?q=imported", OPS)
    assert 3 == hits["total"]  # imported records are searchable


async def test_a_batch_with_one_bad_record_creates_nothing(store: TestClient[Any, Any]) -> None:
    good = {"key": "a", "record": {"title": "fine", "content": "x"}}
    bad = {"key": "b", "record": {"title": "no", "content": "x", "context_id": 999}}
    refused = await post(store, "/v1/bulk/import/memory", {"records": [good, bad]}, OPS, 422)
    assert refused["error"]["message"].startswith("records[1]: context_id")
    assert 0 == (await get(store, "/v1/stats", OPS))["memories"]


async def test_bulk_paths_are_for_an_admin_and_check_their_input(
    store: TestClient[Any, Any],
) -> None:
    for method, path in (
        ("GET", "/v1/bulk/export/memory"),
        ("POST", "/v1/bulk/lookup/memory"),
        ("POST", "/v1/bulk/import/memory"),
    ):
        resp = await store.request(method, path, json={"ids": []}, headers=ALICE)
        assert 403 == resp.status, path
    resp = await store.get("/v1/bulk/export/secrets", headers=OPS)
    assert 404 == resp.status
    resp = await store.get("/v1/bulk/export/memory?limit=0", headers=OPS)
    assert 400 == resp.status
    resp = await store.get("/v1/bulk/export/memory?digest=maybe", headers=OPS)
    assert 400 == resp.status
    await post(store, "/v1/bulk/lookup/memory", {"ids": [1], "digest": "no"}, OPS, 422)
    await post(store, "/v1/bulk/lookup/memory", {"ids": ["1"]}, OPS, 422)
    await post(store, "/v1/bulk/lookup/memory", {"ids": list(range(1, 1002))}, OPS, 422)
    await post(store, "/v1/bulk/import/memory", {"records": [{"key": "k"}]}, OPS, 422)
    await post(store, "/v1/bulk/import/memory", {"records": [{"key": 1, "record": {}}]}, OPS, 422)

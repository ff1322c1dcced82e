"""What differs inside the engines, and what must not differ outside them."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, func, select

from memshift.database import Database
from memshift.errors import ConfigError
from memshift.store.api import STATE
from memshift.store.check import check_store
from memshift.store.schema import blob_chunks, blobs, prepare
from tests.store.conftest import ALICE, BOB, MakeStore, get, post

Client = TestClient[Any, Any]
STAMPS = ("created_at", "updated_at")


def prose(n_bytes: int, seed: int = 1) -> str:
    """Return English-like text of about ``n_bytes`` with a varied vocabulary."""
    rnd = random.Random(seed)
    words = ["".join(rnd.choices(string.ascii_lowercase, k=rnd.randint(2, 9))) for _ in range(3000)]
    out: list[str] = []
    size = 0
    while size < n_bytes:
        word = rnd.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:n_bytes]


def strip_stamps(value: Any) -> Any:
    """Return ``value`` without timestamp fields, recursively."""
    if isinstance(value, dict):
        return {k: strip_stamps(v) for k, v in value.items() if k not in STAMPS}
    if isinstance(value, list | tuple):
        return [strip_stamps(v) for v in value]
    return value


async def workload(client: Client) -> list[tuple[int, Any]]:
    """Run one fixed sequence of requests and return every answer."""
    answers: list[tuple[int, Any]] = []

    async def call(method: str, path: str, body: Any = None, who: dict[str, str] = ALICE) -> Any:
        resp = await client.request(method, path, json=body, headers=who)
        payload = await resp.json() if resp.status != 204 else None
        answers.append((resp.status, payload))
        return payload

    ctx = await call("POST", "/v1/contexts", {"name": "research", "access_level": "public"})
    big = prose(60_000)
    ids = [
        (
            await call(
                "POST",
                "/v1/memories",
                {
                    "title": f"note {i}",
                    "content": text,
                    "context_id": ctx["id"] if i % 2 else None,
                    "metadata": {"i": i, "tags": ["a", "b"]},
                    "access_level": "public" if i == 3 else "private",
                },
            )
        )["id"]
        for i, text in enumerate(["short one", big, big, prose(3000, 2), "tiny café ünïcode"])
    ]
    await call(
        "POST",
        "/v1/relations",
        {"name": "same", "source_id": ids[1], "target_id": ids[2], "strength": 0.25},
    )
    await call("PATCH", f"/v1/memories/{ids[0]}", {"content": prose(5000, 3), "title": "longer"})
    await call("DELETE", f"/v1/memories/{ids[2]}")
    for path in (
        f"/v1/memories/{ids[1]}",
        f"/v1/memories/{ids[0]}",
        "/v1/memories?limit=2",
        f"/v1/memories/{ids[1]}/relations",
        "/v1/contexts",
        "/v1/stats",
        f"/v1/search?q={big.split()[5]}",
        "/v1/search?q=cafe",
        "/v1/search?q=tiny",
        f"/v1/memories/{ids[3]}",
    ):
        await call("GET", path)
    await call("GET", f"/v1/memories/{ids[3]}", who=BOB)
    await call("POST", "/v1/memories", {"title": "x", "content": "y", "context_id": 404})
    return answers


async def test_both_engines_answer_identically(
    make_store: MakeStore, db_url: str, tmp_path: Any, pg_or_sqlite_second: str
) -> None:
    """The same requests give the same JSON on both engines, timestamps and storage aside."""
    legacy = await make_store("legacy", db_url)
    new = await make_store("new", pg_or_sqlite_second)
    got_legacy, got_new = await workload(legacy), await workload(new)
    stats_at = [
        i for i, (_, p) in enumerate(got_legacy) if isinstance(p, dict) and "stored_bytes" in p
    ]
    for i in stats_at:
        assert got_new[i][1]["stored_bytes"] < got_legacy[i][1]["stored_bytes"]
        got_legacy[i][1].pop("stored_bytes")
        got_new[i][1].pop("stored_bytes")
    assert strip_stamps(got_legacy) == strip_stamps(got_new)


@pytest.fixture
def pg_or_sqlite_second(request: pytest.FixtureRequest, db_url: str, tmp_path: Any) -> str:
    """A second empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path}/second.db"
    return str(request.getfixturevalue("make_pg_url")())


def _db(client: Client) -> Database:
    return client.server.app[STATE].db


def _blob_rows(client: Client) -> list[Any]:
    return _db(client).read_sync(lambda c: c.execute(select(blobs)).all())


@pytest.fixture
async def new_store(make_store: MakeStore, db_url: str) -> Client:
    """A new-engine store on each database."""
    return await make_store("new", db_url)


async def test_new_engine_compresses_text(new_store: Client) -> None:
    """Text of 1 KiB or more is kept zstd-compressed and smaller; short text is kept raw."""
    await post(new_store, "/v1/memories", {"title": "big", "content": prose(50_000)})
    await post(new_store, "/v1/memories", {"title": "small", "content": "just a few words"})
    codecs = sorted((row.codec, row.stored_size < row.size) for row in _blob_rows(new_store))
    assert [("raw", False), ("zstd", True)] == codecs
    stats = await get(new_store, "/v1/stats")
    assert stats["stored_bytes"] < stats["logical_bytes"] * 0.7


async def test_new_engine_chunks_large_content(new_store: Client) -> None:
    """Content over 1 MiB is kept as ordered chunks and read back exactly."""
    text = prose(2_621_440, seed=7)
    made = await post(new_store, "/v1/memories", {"title": "huge", "content": text})
    assert text == (await get(new_store, f"/v1/memories/{made['id']}"))["content"]
    [blob] = _blob_rows(new_store)
    chunks = _db(new_store).read_sync(
        lambda c: c.execute(select(func.count()).select_from(blob_chunks)).scalar_one()
    )
    assert (3, 3, None) == (blob.chunks, chunks, blob.data)
    word = text.split()[-3]
    found = await get(new_store, f"/v1/search?q={word}")
    assert made["id"] in [r["id"] for r in found["results"]]


async def test_new_engine_stores_identical_content_once(new_store: Client) -> None:
    """Two memories with one content share one blob; deleting one leaves the other whole."""
    text = prose(20_000, seed=3)
    a = await post(new_store, "/v1/memories", {"title": "a", "content": text})
    b = await post(new_store, "/v1/memories", {"title": "b", "content": text})
    assert [2] == [row.refcount for row in _blob_rows(new_store)]
    await new_store.delete(f"/v1/memories/{a['id']}", headers=ALICE)
    assert [1] == [row.refcount for row in _blob_rows(new_store)]
    assert text == (await get(new_store, f"/v1/memories/{b['id']}"))["content"]
    assert [] == check_store(_db(new_store))[1]
    await new_store.delete(f"/v1/memories/{b['id']}", headers=ALICE)
    assert [] == _blob_rows(new_store)


async def test_update_moves_the_reference(new_store: Client) -> None:
    """Changing content releases the old blob and shares an existing identical one."""
    a = await post(new_store, "/v1/memories", {"title": "a", "content": "first text"})
    b = await post(new_store, "/v1/memories", {"title": "b", "content": "second text"})
    resp = await new_store.patch(
        f"/v1/memories/{a['id']}", json={"content": "second text"}, headers=ALICE
    )
    assert 200 == resp.status
    assert [2] == [row.refcount for row in _blob_rows(new_store)]
    assert "second text" == (await get(new_store, f"/v1/memories/{b['id']}"))["content"]
    assert [] == check_store(_db(new_store))[1]


async def test_search_finds_words_inside_compressed_content(new_store: Client) -> None:
    """A word deep inside compressed content is found, with a snippet around it."""
    text = prose(40_000, seed=5) + " zanzibar " + prose(40_000, seed=6)
    made = await post(new_store, "/v1/memories", {"title": "far", "content": text})
    found = await get(new_store, "/v1/search?q=Zanzibar")
    assert [made["id"]] == [r["id"] for r in found["results"]]
    assert "zanzibar" in found["results"][0]["snippet"]


async def test_listing_never_reads_content(store: Client) -> None:
    """The SQL behind a list never selects content, nor touches blobs."""
    await post(store, "/v1/memories", {"title": "a", "content": prose(30_000)})
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    engine = _db(store).engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        page = await get(store, "/v1/memories")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert 1 == len(page["items"])
    selects = [s for s in statements if s.lstrip().startswith("select")]
    assert selects
    assert not [
        s for s in selects if "memories.content," in s or "memories.content " in s or "blob" in s
    ]


async def test_a_database_belongs_to_one_engine(tmp_path: Any) -> None:
    """Opening a legacy database with the new engine is refused."""
    db = Database(f"sqlite:///{tmp_path}/one.db")
    try:
        prepare(db, "legacy")
        with pytest.raises(ConfigError, match="holds a 'legacy' store"):
            prepare(db, "new")
    finally:
        db.close()

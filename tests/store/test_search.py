"""Search: terms and snippets, and an index that follows every write on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import create_engine

from memshift.store.api import STATE
from memshift.store.check import check_store
from memshift.store.search import SNIPPET_CHARS, snippet, terms_of
from tests.store.conftest import ALICE, MakeStore, get, post


def test_terms_split_words_case_and_underscores() -> None:
    """Terms are lower-case words; underscores split; one-letter words are left out."""
    assert {"read": 2, "blob": 1, "zstd": 1, "ünïcode": 1} == dict(
        terms_of("read_blob READ a zstd Ünïcode!")
    )


def test_snippet_centres_on_the_first_hit() -> None:
    """A snippet shows text around the first query term and marks cuts."""
    text = "lorem " * 100 + "the needle is here " + "ipsum " * 100
    cut = snippet(text, "needle")
    assert "needle is here" in cut
    assert cut.startswith("…") and cut.endswith("…")
    assert len(cut) <= SNIPPET_CHARS + 2


def test_snippet_without_hit_starts_at_the_beginning() -> None:
    """When only the title matched, the snippet is the start of the content."""
    assert "short text" == snippet("short   text", "title")


async def test_the_index_follows_updates_and_deletes(
    make_store: MakeStore, engine: str, db_url: str
) -> None:
    """Words a memory no longer holds stop finding it; a deleted memory is found by
    nothing; the index then holds exactly the live memories (store check is clean)."""
    store = await make_store(engine, db_url)
    made = await post(store, "/v1/memories", {"title": "apricot", "content": "walnut salad"})
    other = await post(store, "/v1/memories", {"title": "walnut", "content": "walnut bread"})
    await patch(store, f"/v1/memories/{made['id']}", {"content": "hazelnut tart"})
    assert [] == await _ids(store, "salad")
    assert [made["id"]] == await _ids(store, "hazelnut apricot")
    await patch(store, f"/v1/memories/{made['id']}", {"title": "peach"})
    assert [] == await _ids(store, "apricot")
    assert [made["id"]] == await _ids(store, "peach")
    assert [other["id"]] == await _ids(store, "walnut")  # the title outweighs nothing here
    deleted = await store.delete(f"/v1/memories/{other['id']}", headers=ALICE)
    assert 204 == deleted.status
    assert [] == await _ids(store, "walnut")
    assert [] == check_store(store.server.app[STATE].db)[1]


async def test_a_store_made_before_the_index_is_indexed_at_start(
    make_store: MakeStore, engine: str, tmp_path: Path
) -> None:
    """A database from before (the hand-made index's tables, no search index) gets its
    memories indexed when a store starts on it, and the old tables dropped."""
    url = f"sqlite:///{tmp_path}/old.db"
    first = await make_store(engine, url)
    made = await post(first, "/v1/memories", {"title": "old", "content": "quince jam"})
    await first.close()
    engine_ = create_engine(url)
    with engine_.begin() as conn:
        conn.exec_driver_sql("DROP TABLE memory_search")
        conn.exec_driver_sql("CREATE TABLE search_terms (term TEXT, memory_id INTEGER)")
    again = await make_store(engine, url)
    assert [made["id"]] == await _ids(again, "quince")
    with engine_.connect() as conn:
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master")}
    engine_.dispose()
    assert "search_terms" not in tables


async def _ids(store: TestClient[Any, Any], query: str) -> list[int]:
    found = await get(store, f"/v1/search?q={query}")
    return [r["id"] for r in found["results"]]


async def patch(store: TestClient[Any, Any], path: str, body: Any) -> Any:
    resp = await store.patch(path, json=body, headers=ALICE)
    assert 200 == resp.status, await resp.text()
    return await resp.json()

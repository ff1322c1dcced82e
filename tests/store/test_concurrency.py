"""Concurrent writers on SQLite queue instead of failing with "database is locked"."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.store.conftest import ALICE, MakeStore, get


async def test_many_concurrent_writers_on_one_store(make_store: MakeStore, tmp_path: Any) -> None:
    """Sixty concurrent creates and updates on one SQLite store all succeed."""
    store = await make_store("new", f"sqlite:///{tmp_path}/c.db")
    creates = await asyncio.gather(
        *(
            store.post(
                "/v1/memories",
                json={"title": f"t{i}", "content": f"body {i} " * 200},
                headers=ALICE,
            )
            for i in range(40)
        )
    )
    assert {201} == {r.status for r in creates}
    ids = [(await r.json())["id"] for r in creates]
    updates = await asyncio.gather(
        *(
            store.patch(f"/v1/memories/{i}", json={"title": "changed"}, headers=ALICE)
            for i in ids[:20]
        )
    )
    assert {200} == {r.status for r in updates}
    assert 40 == (await get(store, "/v1/stats"))["memories"]


async def test_two_store_processes_share_one_file(make_store: MakeStore, tmp_path: Any) -> None:
    """Two stores writing to one SQLite file at once both succeed (WAL and busy timeout)."""
    url = f"sqlite:///{tmp_path}/shared.db"
    one, two = await make_store("legacy", url), await make_store("legacy", url)

    async def burst(client: Any, tag: str) -> list[int]:
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/memories", json={"title": f"{tag}{i}", "content": "x" * 500}, headers=ALICE
                )
                for i in range(25)
            )
        )
        return [r.status for r in answers]

    statuses = await asyncio.gather(burst(one, "a"), burst(two, "b"))
    assert [[201] * 25, [201] * 25] == statuses
    assert 50 == (await get(one, "/v1/stats"))["memories"]

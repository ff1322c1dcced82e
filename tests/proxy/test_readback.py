"""A create whose answer was lost, on a store without keys, is read back and settled once;
and what a write waiting in the backlog means for reads compared meanwhile.

Two legacy-style stores (no ``Idempotency-Key``, ids in creation order) behind a proxy,
new behind a front that loses one create: after the store applied it (its answer
cut), or before it ever saw it. new already holds a record of its own, so its ids
are shifted against legacy's: the read back must pick the right record.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from memshift.proxy.keys import PROXY
from tests.doubles.legacy_style import make_app
from tests.faults import LOSE, REFUSE, CuttingFront
from tests.proxy.conftest import ADMIN, MakeProxy

PROFILE = Path(__file__).resolve().parents[1] / "doubles" / "legacy-style.toml"
FAST = {"retry_attempts": 2, "retry_initial_s": 0.02, "retry_max_s": 0.1, "replay_interval_s": 0.2}


def _url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


@pytest.mark.parametrize("lost", ["mid_body", LOSE])
async def test_a_held_create_is_read_back_then_paired_or_sent(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path, lost: str
) -> None:
    """Applied: its record on new is paired with legacy's and nothing is sent again.
    Never seen: it is sent, once. Either way a later edit reaches the right record."""
    files = {name: tmp_path / f"{name}.json" for name in ("legacy", "new")}
    stores = {name: await aiohttp_client(make_app(path)) for name, path in files.items()}
    await stores["new"].post("/memories", json={"title": "new's own", "content": "kept"})
    losing = {"left": 1}

    def rule(method: str, path: str) -> Any:
        if method == "POST" and path == "/memories" and losing["left"]:
            losing["left"] -= 1
            return lost
        return None

    front = CuttingFront(_url(stores["new"]), rule)
    profile = {"profile": str(PROFILE), "token": ""}
    proxy, _ = await make_proxy(
        _url(stores["legacy"]),
        await front.start(),
        write_mode="sync",
        sections={"stores": {"legacy": profile, "new": profile}, "mirror": FAST},
    )
    core = proxy.server.app[PROXY]
    try:
        made = await proxy.post("/memories", json={"title": "lost", "content": "first"})
        assert 201 == made.status
        memory = (await made.json())["memory"]["memory_id"]
        assert 1 == (await core.writelog.figures())["held"]
        edited = await proxy.patch(f"/memories/{memory}", json={"content": "edited"})
        assert 200 == edited.status
        async with asyncio.timeout(30):
            while (f := await core.writelog.figures())["backlog"] or f["held"]:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    finally:
        await front.close()
    new = json.loads(files["new"].read_text())["memories"]
    assert sorted((m["title"], m["content"]) for m in new.values()) == [
        ("lost", "edited"),
        ("new's own", "kept"),
    ]
    assert [("POST", "/memories")] == [cut[:2] for cut in front.cut]


async def test_a_list_read_while_a_keyless_write_waits_is_pending_not_a_mismatch(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path
) -> None:
    """With write_order = global every write holds every record: while one waits in the
    backlog (new refuses it for now), a list compared against new is pending: new does
    not have what legacy has yet."""
    files = {name: tmp_path / f"{name}.json" for name in ("legacy", "new")}
    stores = {name: await aiohttp_client(make_app(path)) for name, path in files.items()}
    down = {"on": True}
    front = CuttingFront(
        _url(stores["new"]), lambda m, _p: REFUSE if down["on"] and m == "POST" else None
    )
    profile = {"profile": str(PROFILE), "token": ""}
    proxy, admin = await make_proxy(
        _url(stores["legacy"]),
        await front.start(),
        write_mode="sync",
        shadow_read_percent=100,
        sections={
            "stores": {"legacy": profile, "new": profile},
            "mirror": {**FAST, "replay_interval_s": 30},
        },
    )
    core = proxy.server.app[PROXY]
    try:
        assert 201 == (await proxy.post("/memories", json={"title": "t", "content": "c"})).status
        assert 1 == (await core.writelog.figures())["backlog"]
        assert 200 == (await proxy.get("/memories")).status
        async with asyncio.timeout(10):
            while core.shadows.active:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        report = await (await admin.get("/report", headers=ADMIN)).json()
    finally:
        await front.close()
    route = next(r for r in report["routes"] if r["route"] == "memories.list")
    assert (1, 1, 0) == (route["compared"], route["pending"], route["mismatched"])

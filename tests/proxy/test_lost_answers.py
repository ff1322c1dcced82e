"""A store that applied a write and lost its answer, and one that never got it.

The first must end with the write on both stores exactly once (replay asks the primary
again under the write's key); the second must leave nothing to replay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from memshift.proxy.instance import Proxy
from memshift.proxy.keys import PROXY
from memshift.store.app import make_app
from memshift.store.settings import StoreSettings
from tests.faults import CUTS, Cut, CuttingFront, full_backlog
from tests.helpers import eventually
from tests.proxy.conftest import SERVICE, TOKENS, MakeProxy, auth

FAST = {"mirror": {"replay_interval_s": 0.1, "retry_initial_s": 0.01, "retry_max_s": 0.05}}


async def _store(aiohttp_client: Any, tmp_path: Path, name: str) -> TestClient[Any, Any]:
    db_url = f"sqlite:///{tmp_path}/{name}.db"
    settings = StoreSettings(engine=name, db_url=db_url)  # type: ignore[arg-type]
    client: TestClient[Any, Any] = await aiohttp_client(make_app(settings, TOKENS))
    return client


def _url(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("")).rstrip("/")


async def _titled(store: TestClient[Any, Any], title: str) -> list[dict[str, Any]]:
    listed = await (await store.get("/v1/memories?limit=100", headers=SERVICE)).json()
    return [m for m in listed["items"] if m["title"] == title]


@pytest.mark.parametrize("cut", CUTS)
async def test_a_write_applied_then_cut_off_reaches_the_secondary_exactly_once(
    aiohttp_client: Any, make_proxy: MakeProxy, tmp_path: Path, cut: Cut
) -> None:
    """The primary applies a create and its answer breaks off: the client gets 502, and
    replay resolves the write under its key, so both stores hold it exactly once."""
    legacy = await _store(aiohttp_client, tmp_path, "legacy")
    new = await _store(aiohttp_client, tmp_path, "new")
    cuts = iter([cut])

    def rule(method: str, path: str) -> Cut | None:
        return next(cuts, None) if (method, path) == ("POST", "/v1/memories") else None

    front = CuttingFront(_url(legacy), rule)
    try:
        proxy, _admin = await make_proxy(await front.start(), _url(new), sections=FAST)
        core: Proxy = proxy.server.app[PROXY]
        answer = await proxy.post(
            "/v1/memories", json={"title": "cut", "content": "x"}, headers=auth("user1")
        )
        assert 502 == answer.status
        assert "upstream_broken" == (await answer.json())["error"]["code"]
        assert [("POST", "/v1/memories", cut)] == front.cut
        [kept] = await core.writelog.unfinished()
        assert kept.state in ("unknown", "backlog")

        async def mirrored() -> bool:
            return len(await _titled(new, "cut")) == 1 and not await core.writelog.unfinished()

        async with asyncio.timeout(10):
            while not await mirrored():  # noqa: ASYNC110 (replay works in the background)
                await asyncio.sleep(0.05)
        [original] = await _titled(legacy, "cut")
        [copy] = await _titled(new, "cut")
        assert original["owner"] == copy["owner"] == "user1"
        pair = await core.idmap.translate("memory", [original["id"]], "legacy", "new")
        assert {original["id"]: copy["id"]} == pair
        # A later write to the record goes through as usual.
        again = await proxy.patch(
            f"/v1/memories/{original['id']}", json={"title": "cut"}, headers=auth("user1")
        )
        assert 200 == again.status
    finally:
        await front.close()


async def test_a_write_whose_connect_timed_out_is_forgotten(make_stack: Any) -> None:
    """The primary cannot be connected to in time: nothing was sent, nothing is replayed."""
    stack = await make_stack(seed=0, sections=FAST)
    made = await stack.proxy.post(
        "/v1/memories", json={"title": "first", "content": "x"}, headers=auth("user1")
    )
    assert 201 == made.status  # the caller's identity is known from here on
    held, unreachable = full_backlog()
    try:
        text = stack.config.read_text()
        legacy_url = stack.core.holder.current.stores["legacy"].url
        text = text.replace(legacy_url, unreachable)
        text = text.replace("[stores.legacy]", "[stores.legacy]\nconnect_timeout_s = 0.3")
        stack.config.write_text(text)
        await eventually(
            lambda: stack.core.holder.current.stores["legacy"].url == unreachable, within=5
        )
        answer = await stack.proxy.post(
            "/v1/memories", json={"title": "never", "content": "x"}, headers=auth("user1")
        )
        assert 504 == answer.status
        assert "upstream_timeout" == (await answer.json())["error"]["code"]
        assert [] == await stack.core.writelog.unfinished()
        passed = await stack.core.replayer.run_pass()
        assert (0, 0) == (passed.replayed, passed.skipped)
        assert [] == await _titled(stack.new, "never")
        assert [] == await _titled(stack.legacy, "never")
    finally:
        for sock in held:  # type: ignore[attr-defined]
            sock.close()

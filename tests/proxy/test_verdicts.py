"""A report that tells the truth mid-migration: verdicts, ranked results, windows, promotion.

Each test is a situation an operator meets: stores holding other corpora, a new store
not backfilled yet, a new store down, a rearm after a fix, a promote too early.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from aiohttp import web

from memshift.cli import main
from memshift.proxy.keys import PROXY
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.memories import update_memory
from memshift.store.tokens import Principal
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeForwarder, MakeProxy, MakeStack, auth
from tests.proxy.test_compare import _compared, _report, _route
from tests.proxy.test_mcp import call, mcp_client, mcp_url
from tests.proxy.test_workload import drained

WORDS = "apple banana cherry apple"


def _url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def _drained(core: Any) -> None:
    async with asyncio.timeout(30):
        while core.writes.jobs.active or (await core.writelog.figures())["backlog"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def _tamper(stack: Any, new_id: int, **fields: Any) -> None:
    store = stack.new.server.app[STATE]
    store.db.write_sync(
        lambda conn: update_memory(
            conn, Call(Principal("ops", admin=True), store.content), new_id, fields
        )
    )


async def test_searches_over_other_corpora_match_and_a_changed_result_does_not(
    make_stack: MakeStack,
) -> None:
    """new also holds four memories of another user, so its scores differ: searches by
    REST and MCP still match (same records, same order); a title changed on new does not."""
    stack = await make_stack(seed=0, shadow_read_percent=100)
    ids = []
    for n in range(3):
        made = await stack.proxy.post(
            "/v1/memories",
            json={"title": f"fruit {n}", "content": " ".join([WORDS] * (n + 1))},
            headers=auth("user1"),
        )
        ids.append((await made.json())["id"])
    for n in range(4):  # another user's, on new only
        await stack.new.post(
            "/v1/memories", json={"title": f"x{n}", "content": "apple pie"}, headers=auth("user9")
        )
    await drained(stack)
    legacy = await (await stack.legacy.get("/v1/search?q=apple", headers=auth("user1"))).json()
    new = await (await stack.new.get("/v1/search?q=apple", headers=auth("user1"))).json()
    assert [r["score"] for r in legacy["results"]] != [r["score"] for r in new["results"]]

    assert 200 == (await stack.proxy.get("/v1/search?q=apple", headers=auth("user1"))).status
    async with mcp_client(mcp_url(stack), "user1", "legacy") as client:
        found = await call(client, "search_memories", query="apple")
        assert 3 == len(found["results"])
    await _compared(stack.core)
    doc = await _report(stack.admin)
    rest, tool = _route(doc, "search"), _route(doc, "mcp:tools/call search_memories")
    assert (1, 1, 0, 0) == (
        rest["compared"],
        tool["compared"],
        rest["mismatched"],
        tool["mismatched"],
    )

    [new_id] = (await stack.core.idmap.translate("memory", [ids[1]], "legacy", "new")).values()
    _tamper(stack, new_id, title="changed on new")
    await stack.proxy.get("/v1/search?q=apple", headers=auth("user1"))
    await _compared(stack.core)
    rest = _route(await _report(stack.admin), "search")
    assert (2, 1) == (rest["compared"], rest["mismatched"])


async def test_records_not_backfilled_are_pending_until_the_backfill(
    make_stack: MakeStack, tmp_path: Path
) -> None:
    """500 records on legacy from before memshift, new empty, every read compared: none is
    a mismatch, pending says how many, nothing fails back; after a backfill the same
    reads match."""
    stack = await make_stack(
        seed=0, shadow_read_percent=100, sections={"rollback": {"min_samples": 20}}
    )
    sem = asyncio.Semaphore(16)

    async def old(n: int) -> int:
        async with sem:
            made = await stack.legacy.post(
                "/v1/memories",
                json={"title": f"old {n}", "content": "from before"},
                headers=auth("user1"),
            )
            return int((await made.json())["id"])

    ids = await asyncio.gather(*(old(n) for n in range(500)))

    async def read_them() -> None:
        for memory in ids[:60]:
            assert (
                200
                == (await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))).status
            )
        for _ in range(5):
            await stack.proxy.get("/v1/memories?limit=50", headers=auth("user1"))
            await stack.proxy.get("/v1/search?q=before", headers=auth("user1"))
        await _compared(stack.core)

    await read_them()
    await asyncio.sleep(1.5)  # the watchdog ticks over what it saw
    doc = await _report(stack.admin)
    assert (0, 70) == (doc["totals"]["mismatched"], doc["totals"]["pending"])
    assert not stack.core.plane.state.failed_back

    assert 0 == await asyncio.to_thread(main, ["backfill", "--config", str(stack.config)])
    await eventually(lambda: stack.core.shadows.backfilled, within=5)
    await stack.admin.post("/report/reset", json={"reason": "backfilled"}, headers=ADMIN)
    await read_them()
    doc = await _report(stack.admin)
    assert (70, 70, 0, 0) == (
        doc["totals"]["compared"],
        doc["totals"]["matched"],
        doc["totals"]["pending"],
        doc["totals"]["mismatched"],
    )
    assert 140 == doc["since_start"]["totals"]["compared"]


async def test_a_new_store_that_cannot_be_reached_is_an_error_not_a_mismatch(
    make_stack: MakeStack,
) -> None:
    stack = await make_stack(seed=0, shadow_read_percent=100)
    made = await stack.proxy.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    memory = (await made.json())["id"]
    await drained(stack)
    await stack.new.close()  # the new store is gone
    for _ in range(5):
        assert (
            200 == (await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))).status
        )
    await _compared(stack.core)
    doc = await _report(stack.admin)
    item = _route(doc, "memories.item")
    status = await (await stack.admin.get("/status", headers=ADMIN)).json()
    assert (5, 5, 0) == (item["compared"], item["errors"], item["mismatched"])
    assert status["stores"]["new"]["errors"] >= 5


async def test_a_rearm_after_a_fix_and_a_promote_do_not_trip_again(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """30% of new's answers fail: failback. The faults stop; the operator re-arms, sends
    traffic, promotes: writes go to new, and nothing trips again on old samples."""
    stack = await make_stack(seed=0)
    broken = {"on": True}
    counter = itertools.count()

    async def flaky(request: web.Request) -> web.Response | None:
        if broken["on"] and request.method == "GET" and next(counter) % 10 < 3:
            return web.json_response({"error": {"code": "x", "message": "x"}}, status=500)
        return None

    faulty = await make_forwarder(_url(stack.new), flaky)
    proxy, admin = await make_proxy(
        _url(stack.legacy),
        faulty,
        read_percent=100,
        sections={"rollback": {"min_samples": 20, "window_s": 30}},
    )
    core = proxy.server.app[PROXY]
    made = await proxy.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    memory = (await made.json())["id"]

    async def reads(count: int) -> None:
        for _ in range(count):
            await proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))

    await reads(40)
    await eventually(lambda: core.plane.state.failed_back, within=5)
    broken["on"] = False
    assert 200 == (await admin.post("/rearm", json={"reason": "fixed"}, headers=ADMIN)).status
    assert 200 == (await admin.post("/ramp", json={"read_percent": 100}, headers=ADMIN)).status
    await reads(40)
    await eventually(lambda: core.watchdog.judge().state == "healthy", within=5)
    promoted = await admin.post("/promote", json={"reason": "healthy again"}, headers=ADMIN)
    assert 200 == promoted.status, await promoted.text()
    for n in range(10):
        answer = await proxy.post(
            "/v1/memories", json={"title": f"p{n}", "content": "c"}, headers=auth("user1")
        )
        assert "new" == answer.headers["X-Memshift-Served-By"]
        await reads(3)
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.5)  # watchdog ticks
    assert (False, "new") == (core.plane.state.failed_back, core.plane.state.primary)


async def test_promote_is_refused_with_its_reasons_unless_forced(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """With writes in the backlog and too few samples, promote says why; forced, it goes
    through and the audit says it was forced."""
    stack = await make_stack(seed=0)

    async def refuse_writes(request: web.Request) -> web.Response | None:
        if request.method != "GET":
            return web.json_response({"error": {"code": "x", "message": "x"}}, status=503)
        return None

    faulty = await make_forwarder(_url(stack.new), refuse_writes)
    proxy, admin = await make_proxy(
        _url(stack.legacy),
        faulty,
        sections={"mirror": {"retry_attempts": 1, "replay_interval_s": 60}},
    )
    await proxy.post("/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1"))
    refused = await admin.post("/promote", json={}, headers=ADMIN)
    error = (await refused.json())["error"]
    assert (409, "promote_unsafe") == (refused.status, error["code"])
    assert any("backlog" in r for r in error["reasons"])
    assert any("inconclusive" in r for r in error["reasons"])
    forced = await admin.post("/promote", json={"force": True, "reason": "drill"}, headers=ADMIN)
    assert ("new", 200) == ((await forced.json())["primary"], forced.status)
    audit = (await (await admin.get("/audit", headers=ADMIN)).json())["items"][0]
    assert audit["reason"].startswith("forced past: ") and audit["reason"].endswith("drill")


async def test_a_report_reset_opens_a_window_on_every_instance(
    make_pg_url: Any, make_stack: MakeStack, make_proxy: MakeProxy
) -> None:
    """Two instances on one state db: a reset on one is the other's new window too; the
    totals since start stay, and the reset is audited."""
    stack = await make_stack(seed=0)
    state = make_pg_url()
    one = await make_proxy(
        _url(stack.legacy), _url(stack.new), state_url=state, shadow_read_percent=100
    )
    two = await make_proxy(
        _url(stack.legacy), _url(stack.new), state_url=state, shadow_read_percent=100
    )
    made = await one[0].post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    memory = (await made.json())["id"]
    for proxy in (one[0], two[0]):
        await _drained(proxy.server.app[PROXY])
        for _ in range(3):
            await proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
        await _compared(proxy.server.app[PROXY])
    reset = await one[1].post("/report/reset", json={"reason": "after repair"}, headers=ADMIN)
    assert ("reset", "after repair", 0) == (
        (doc := await reset.json())["window"]["opened_by"],
        doc["window"]["reason"],
        doc["totals"]["compared"],
    )
    other = two[0].server.app[PROXY]
    await eventually(lambda: other.report.window.opened_by == "reset", within=5)
    await two[0].get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(other)
    await other._save_report()
    merged = await (await one[1].get("/report", headers=ADMIN)).json()
    assert (1, 7) == (merged["totals"]["compared"], merged["since_start"]["totals"]["compared"])
    audit = (await (await one[1].get("/audit", headers=ADMIN)).json())["items"][0]
    assert ({"report": "reset"}, "after repair") == (audit["change"], audit["reason"])

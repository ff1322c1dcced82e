"""Shadow reads and the consistency report: real differences, and only those."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

import aiohttp
from aiohttp import web

from memshift.cli import main
from memshift.compare import store as report_store
from memshift.proxy.keys import PROXY
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.memories import update_memory
from memshift.store.tokens import Principal
from tests.proxy.conftest import (
    ADMIN,
    ADMIN_TOKEN,
    USERS,
    MakeProxy,
    MakeStack,
    auth,
    echo_server,
    helper_did,
    helper_up,
)
from tests.proxy.test_workload import drained, user_session


async def _compared(core: Any) -> None:
    async with asyncio.timeout(10):
        while core.shadows.active:  # noqa: ASYNC110 (waits for background comparisons)
            await asyncio.sleep(0.02)


async def _report(admin: Any) -> dict[str, Any]:
    return dict(await (await admin.get("/report", headers=ADMIN)).json())


def _route(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next((r for r in doc["routes"] if r["route"] == name), {"compared": 0, "mismatched": 0})


async def test_a_changed_record_is_a_content_mismatch(make_stack: MakeStack, helper: bool) -> None:
    """Content changed in new's database shows as $.content on memories.item, with a sample."""
    stack = await make_stack(shadow_read_percent=100, sections={"compare": {"helper": helper}})
    await helper_up(stack.core, helper)
    ids = []
    for i in range(3):
        made = await stack.proxy.post(
            "/v1/memories", json={"title": f"m{i}", "content": f"c{i}"}, headers=auth("user1")
        )
        ids.append((await made.json())["id"])
    [new_id] = (await stack.core.idmap.translate("memory", [ids[1]], "legacy", "new")).values()
    store = stack.new.server.app[STATE]
    store.db.write_sync(
        lambda conn: update_memory(
            conn, Call(Principal("ops", admin=True), store.content), new_id, {"content": "tampered"}
        )
    )
    for memory_id in ids:
        await stack.proxy.get(f"/v1/memories/{memory_id}", headers=auth("user1"))
    await stack.proxy.get("/v1/contexts", headers=auth("user1"))
    await _compared(stack.core)
    helper_did(stack.core, helper, 4)
    doc = await _report(stack.admin)
    item = _route(doc, "memories.item")
    assert (3, 1) == (item["compared"], item["mismatched"])
    assert "$.content" in [f["path"] for f in item["fields"]]
    assert 0 == _route(doc, "contexts.list")["mismatched"]
    sample = doc["samples"][0]
    assert ("memories.item", "c1", "tampered") == (
        sample["route"],
        *next(
            (d["control"], d["candidate"])
            for d in sample["differences"]
            if d["path"] == "$.content"
        ),
    )


async def test_identical_stores_report_no_mismatch(make_stack: MakeStack, helper: bool) -> None:
    """Two equal stores under a workload at read percent 50: mismatch rate 0."""
    stack = await make_stack(
        seed=0, read_percent=50, shadow_read_percent=100, sections={"compare": {"helper": helper}}
    )
    await helper_up(stack.core, helper)
    await asyncio.gather(
        *(user_session(stack.proxy, u, random.Random(i)) for i, u in enumerate(USERS[:6]))
    )
    await drained(stack)
    await _compared(stack.core)
    helper_did(stack.core, helper)
    totals = (await _report(stack.admin))["totals"]
    assert totals["compared"] > 50
    assert (0, 0.0) == (totals["mismatched"], totals["mismatch_rate"])


async def test_noise_is_learned_not_counted(
    aiohttp_server: Any, make_proxy: MakeProxy, helper: bool
) -> None:
    """A field that differs between two reads of one store is learned as noise."""
    ticks = itertools.count()

    async def noisy(request: web.Request) -> web.Response:
        return web.json_response({"memories": 1, "took_ms": next(ticks)})

    legacy, new = await echo_server(aiohttp_server, noisy), await echo_server(aiohttp_server, noisy)
    proxy, admin = await make_proxy(
        str(legacy.make_url("")).rstrip("/"),
        str(new.make_url("")).rstrip("/"),
        shadow_read_percent=100,
        sections={"compare": {"noise_percent": 100, "helper": helper}},
    )
    core = proxy.server.app[PROXY]
    await helper_up(core, helper)
    for _ in range(5):
        await proxy.get("/v1/stats", headers=auth("user1"))
        await _compared(core)
    helper_did(core, helper, 5)
    stats = _route(await _report(admin), "stats")
    assert (5, 0, ["$.took_ms"]) == (stats["compared"], stats["mismatched"], stats["noise_paths"])


async def test_a_read_racing_a_mirrored_write_is_in_flight(
    aiohttp_server: Any, make_stack: MakeStack, make_proxy: MakeProxy, helper: bool
) -> None:
    """While a write to a record is still on its way to new, its reads are in-flight."""
    stack = await make_stack()
    real_new = str(stack.new.make_url("")).rstrip("/")
    forward = aiohttp.ClientSession()

    async def slow_writes(request: web.Request) -> web.Response:
        if request.method == "PATCH":
            await asyncio.sleep(1.0)
        async with forward.request(
            request.method,
            real_new + request.path_qs,
            data=await request.read(),
            headers={
                k: v
                for k, v in request.headers.items()
                if k.lower() not in ("host", "content-length")
            },
        ) as r:
            return web.Response(status=r.status, body=await r.read(), content_type=r.content_type)

    slow = await echo_server(aiohttp_server, slow_writes)
    try:
        proxy, admin = await make_proxy(
            str(stack.legacy.make_url("")).rstrip("/"),
            str(slow.make_url("")).rstrip("/"),
            write_mode="async",
            shadow_read_percent=100,
            sections={"compare": {"helper": helper}},
        )
        core = proxy.server.app[PROXY]
        await helper_up(core, helper)
        made = await (
            await proxy.post(
                "/v1/memories", json={"title": "t", "content": "old"}, headers=auth("user1")
            )
        ).json()
        await _compared(core)
        async with asyncio.timeout(5):
            while core.writes.jobs.active:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await proxy.patch(
            f"/v1/memories/{made['id']}", json={"content": "new"}, headers=auth("user1")
        )
        await proxy.get(f"/v1/memories/{made['id']}", headers=auth("user1"))
        await _compared(core)
        item = _route(await _report(admin), "memories.item")
        assert (1, 1, 0) == (item["compared"], item["inflight"], item["mismatched"])
        helper_did(core, helper, 1)
        async with asyncio.timeout(10):
            while core.writes.jobs.active:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await forward.close()


async def test_report_survives_a_restart_and_the_cli_prints_it(
    make_stack: MakeStack, capsys: Any
) -> None:
    """The report is saved in the state db and read back; memshift report prints a table."""
    stack = await make_stack(shadow_read_percent=100)
    await stack.proxy.get("/v1/contexts", headers=auth("user1"))
    await _compared(stack.core)
    await report_store.save(stack.core.state_db, stack.core.instance, stack.core.report)
    saved = await report_store.saved(stack.core.state_db)
    assert 1 == saved[stack.core.instance]["routes"]["contexts.list"]["compared"]
    base = str(stack.admin.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["report", "--admin", base, "--token", ADMIN_TOKEN])
    out = capsys.readouterr().out
    assert (0, True) == (code, "contexts.list" in out)


async def test_a_restarted_proxy_keeps_its_report(
    make_stack: MakeStack, make_proxy: MakeProxy, tmp_path: Any
) -> None:
    """A proxy stopped and started again on the same state db reports what it compared."""
    stack = await make_stack(shadow_read_percent=100)
    for _ in range(3):
        await stack.proxy.get("/v1/contexts", headers=auth("user1"))
    await _compared(stack.core)
    await stack.proxy.close()  # shutdown saves the report
    _proxy, admin = await make_proxy(
        str(stack.legacy.make_url("")).rstrip("/"),
        str(stack.new.make_url("")).rstrip("/"),
        state_url=f"sqlite:///{tmp_path}/state.db",
    )
    assert 3 == _route(await _report(admin), "contexts.list")["compared"]

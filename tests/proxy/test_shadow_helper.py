"""The shadow helper process: idle priority, bounded, restarted, following the config."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from memshift.proxy.keys import PROXY
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.memories import update_memory
from memshift.store.tokens import Principal
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeProxy, MakeStack, auth, echo_server, helper_up
from tests.proxy.test_compare import _compared


async def _helper_has_the_settings(core: Any) -> None:
    """With a helper, wait until it has taken the reloaded settings."""
    helper = core.shadows.helper
    if helper is not None:
        await eventually(lambda: helper.settings_applied >= helper.settings_sent, within=5)


HELPER = {"compare": {"helper": True}}


async def _memory(stack: Any, title: str) -> int:
    made = await stack.proxy.post(
        "/v1/memories", json={"title": title, "content": "c"}, headers=auth("user1")
    )
    assert 201 == made.status
    return int((await made.json())["id"])


async def test_the_helper_runs_at_idle_priority_and_comes_back_when_killed(
    make_stack: MakeStack,
) -> None:
    """The helper asks for idle priority; killed, it is started again and compares on."""
    stack = await make_stack(shadow_read_percent=100, sections=HELPER)
    core = stack.core
    await helper_up(core, True)
    first = core.shadows.helper.pid
    assert os.SCHED_IDLE == os.sched_getscheduler(first)
    memory = await _memory(stack, "m")
    await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(core)
    os.kill(first, signal.SIGKILL)
    async with asyncio.timeout(30):
        while core.shadows.helper.pid == first or not core.shadows.helper.running:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert 1 == core.shadows.helper.restarts
    await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(core)
    item = next(r for r in core.report.document()["routes"] if r["route"] == "memories.item")
    assert (2, 0, 2) == (item["compared"], item["mismatched"], core.shadows.helper.settled)


async def test_the_helper_keeps_to_its_cpus(make_stack: MakeStack) -> None:
    """``helper_cpus`` pins the helper, and only it, to those CPUs."""
    cpu = min(os.sched_getaffinity(0))
    stack = await make_stack(
        shadow_read_percent=100, sections={"compare": {"helper": True, "helper_cpus": [cpu]}}
    )
    await helper_up(stack.core, True)
    assert {cpu} == os.sched_getaffinity(stack.core.shadows.helper.pid)


async def test_shadow_reads_reach_the_other_store_health_window(make_stack: MakeStack) -> None:
    """At read percent 0 new sees only shadow reads: the proxy counts the helper's."""
    stack = await make_stack(shadow_read_percent=100, sections=HELPER)
    await helper_up(stack.core, True)
    memory = await _memory(stack, "h")
    before = (await (await stack.admin.get("/status", headers=ADMIN)).json())["stores"]["new"]
    for _ in range(5):
        await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(stack.core)
    after = (await (await stack.admin.get("/status", headers=ADMIN)).json())["stores"]["new"]
    assert 5 == after["requests"] - before["requests"]
    shadow = stack.core.metrics.sample(
        "memshift_upstream_requests_total",
        store="new",
        route="memories.item",
        purpose="shadow",
        outcome="2xx",
    )
    assert 5 == shadow


async def test_reads_beyond_the_bound_are_dropped_and_lost_ones_counted(
    aiohttp_server: Any, make_proxy: MakeProxy
) -> None:
    """With one read in hand allowed, more are dropped; a helper killed mid-read loses it."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def fast(request: web.Request) -> web.Response:
        return web.json_response({"memories": 1})

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.json_response({"memories": 1})

    legacy, new = await echo_server(aiohttp_server, fast), await echo_server(aiohttp_server, slow)
    proxy, admin = await make_proxy(
        str(legacy.make_url("")).rstrip("/"),
        str(new.make_url("")).rstrip("/"),
        shadow_read_percent=100,
        sections={"compare": {"helper": True, "workers": 1, "queue": 0, "noise_percent": 0}},
    )
    core = proxy.server.app[PROXY]
    await helper_up(core, True)
    for _ in range(4):
        assert 200 == (await proxy.get("/v1/stats", headers=auth("user1"))).status
    assert (1, 3) == (core.shadows.helper.active, core.report.dropped)
    assert 3 == core.metrics.shadow_dropped._value.get()
    async with asyncio.timeout(10):
        await entered.wait()  # the read is with the helper, waiting on new
    os.kill(core.shadows.helper.pid, signal.SIGKILL)
    async with asyncio.timeout(10):
        while core.shadows.helper.active:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    release.set()
    totals = (await (await admin.get("/report", headers=ADMIN)).json())["totals"]
    assert (0, 3, 1) == (totals["compared"], totals["dropped"], totals["failures"])


async def test_the_helper_follows_a_reloaded_config(make_stack: MakeStack) -> None:
    """A compare rule added to the file while running applies to the helper's diffs."""
    stack = await make_stack(shadow_read_percent=100, sections=HELPER)
    core = stack.core
    await helper_up(core, True)
    memory = await _memory(stack, "r")
    [new_id] = (await core.idmap.translate("memory", [memory], "legacy", "new")).values()
    store = stack.new.server.app[STATE]
    store.db.write_sync(
        lambda conn: update_memory(
            conn, Call(Principal("ops", admin=True), store.content), new_id, {"title": "changed"}
        )
    )
    await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(core)
    text = stack.config.read_text()
    stack.config.write_text(text + '\nignore = ["$.title", "$.version", "$..updated_at"]\n')
    async with asyncio.timeout(10):
        while "$.title" not in [p.text for p in core.holder.current.compare.ignore]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await _helper_has_the_settings(core)
    await stack.proxy.get(f"/v1/memories/{memory}", headers=auth("user1"))
    await _compared(core)
    item = next(r for r in core.report.document()["routes"] if r["route"] == "memories.item")
    assert (2, 1, 1, 2) == (
        item["compared"],
        item["mismatched"],
        item["matched"],
        core.shadows.helper.settled,
    )


def _replace_in(path: str, old: str, new: str) -> None:
    config = Path(path)
    config.write_text(config.read_text().replace(old, new))


async def test_a_store_moved_in_the_config_is_followed(
    aiohttp_server: Any, make_proxy: MakeProxy, helper: bool
) -> None:
    """A new ``stores.new.url`` takes over for shadow reads, in the proxy or its helper."""
    hits = {"legacy": 0, "first": 0, "second": 0}

    def counting(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def answer(request: web.Request) -> web.Response:
            hits[name] += 1
            return web.json_response({"memories": 1})

        return answer

    legacy, first, second = [
        await echo_server(aiohttp_server, counting(name)) for name in ("legacy", "first", "second")
    ]
    first_url, second_url = (str(s.make_url("")).rstrip("/") for s in (first, second))
    proxy, _admin = await make_proxy(
        str(legacy.make_url("")).rstrip("/"),
        first_url,
        shadow_read_percent=100,
        sections={"compare": {"helper": helper, "noise_percent": 0}},
    )
    core = proxy.server.app[PROXY]
    await helper_up(core, helper)
    await proxy.get("/v1/stats", headers=auth("user1"))
    await _compared(core)
    assert (1, 0) == (hits["first"], hits["second"])
    _replace_in(core.holder.current.source, first_url, second_url)
    async with asyncio.timeout(10):
        while not core.holder.current.stores["new"].url.startswith(second_url):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await _helper_has_the_settings(core)
    await proxy.get("/v1/stats", headers=auth("user1"))
    await _compared(core)
    assert (1, 1, 2) == (hits["first"], hits["second"], hits["legacy"])

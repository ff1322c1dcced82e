"""Automatic failback, its latch, promotion, and one control state for many proxies."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web

from memshift.proxy.keys import PROXY
from memshift.store.api import STATE
from memshift.store.call import Call
from memshift.store.memories import update_memory
from memshift.store.tokens import Principal
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeForwarder, MakeProxy, MakeStack, auth

ROLLBACK = {"rollback": {"min_samples": 20, "window_s": 30}}


async def failing_reads(request: web.Request) -> web.Response | None:
    """A new store that answers every read with 500 (writes go through)."""
    if request.method == "GET":
        return web.json_response({"error": {"code": "x", "message": "x"}}, status=500)
    return None


def _url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def _status(admin: Any) -> dict[str, Any]:
    return dict(await (await admin.get("/status", headers=ADMIN)).json())


async def _memories(proxy: Any, count: int) -> list[int]:
    ids = []
    for i in range(count):
        made = await proxy.post(
            "/v1/memories", json={"title": f"m{i}", "content": f"c{i}"}, headers=auth("user1")
        )
        ids.append((await made.json())["id"])
    return ids


async def _through(
    make_stack: MakeStack,
    make_proxy: MakeProxy,
    make_forwarder: MakeForwarder,
    behave: Any,
    **routing: Any,
) -> tuple[Any, Any, Any]:
    stack = await make_stack()
    faulty = await make_forwarder(_url(stack.new), behave)
    proxy, admin = await make_proxy(_url(stack.legacy), faulty, sections=ROLLBACK, **routing)
    return stack, proxy, admin


async def test_errors_of_new_fail_back_by_themselves(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """New answering 500 to half the reads: reads return to legacy, latched, with the reason;
    every client read is still answered right."""
    flip = itertools.cycle([True, False])

    async def half_fail(request: web.Request) -> web.Response | None:
        if request.method == "GET" and next(flip):
            return web.json_response({"error": {"code": "boom", "message": "boom"}}, status=500)
        return None

    _stack, proxy, admin = await _through(
        make_stack, make_proxy, make_forwarder, half_fail, read_percent=100
    )
    ids = await _memories(proxy, 5)
    for i in range(40):
        resp = await proxy.get(f"/v1/memories/{ids[i % 5]}", headers=auth("user1"))
        assert (200, f"c{i % 5}") == (resp.status, (await resp.json())["content"])
    core = proxy.server.app[PROXY]
    await eventually(lambda: core.plane.state.failed_back, within=3)
    status = await _status(admin)
    assert (True, 0, "legacy") == (status["failed_back"], status["read_percent"], status["primary"])
    assert status["reason"].startswith("error_rate")
    resp = await proxy.get(f"/v1/memories/{ids[0]}", headers=auth("user1"))
    assert "legacy" == resp.headers["X-Memshift-Served-By"]


async def test_a_slow_new_store_fails_back(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """New far slower than legacy (p99 ratio over 3) fails back."""

    async def slow(request: web.Request) -> None:
        # Far above legacy's slowest answer: on a busy machine its first, cold write
        # has taken 90 ms, and the ratio of p99s must pass 3.
        if request.method == "GET":
            await asyncio.sleep(0.4)

    _stack, proxy, _admin = await _through(
        make_stack, make_proxy, make_forwarder, slow, read_percent=100, shadow_read_percent=100
    )
    ids = await _memories(proxy, 3)
    for i in range(25):
        await proxy.get(f"/v1/memories/{ids[i % 3]}", headers=auth("user1"))
    core = proxy.server.app[PROXY]
    await eventually(lambda: core.plane.state.failed_back, within=10)
    assert str(core.plane.state.reason).startswith("latency_ratio")


async def test_mismatches_fail_back(make_stack: MakeStack) -> None:
    """Divergent data in new (compared reads mismatching) fails back."""
    # Only mismatches may trip here: one slow request among ten is no finding.
    rules = {"min_samples": 10, "max_latency_ratio": 1000}
    stack = await make_stack(shadow_read_percent=100, sections={"rollback": rules})
    ids = await _memories(stack.proxy, 2)
    [new_id] = (await stack.core.idmap.translate("memory", [ids[0]], "legacy", "new")).values()
    store = stack.new.server.app[STATE]
    store.db.write_sync(
        lambda conn: update_memory(
            conn, Call(Principal("ops", admin=True), store.content), new_id, {"content": "diverged"}
        )
    )
    for _ in range(15):
        await stack.proxy.get(f"/v1/memories/{ids[0]}", headers=auth("user1"))
    await eventually(lambda: stack.core.plane.state.failed_back, within=5)
    assert str(stack.core.plane.state.reason).startswith("mismatch_rate")


async def test_too_little_traffic_is_inconclusive(make_stack: MakeStack) -> None:
    """A handful of requests trips nothing, and status says inconclusive."""
    stack = await make_stack(read_percent=100)
    ids = await _memories(stack.proxy, 2)
    await stack.proxy.get(f"/v1/memories/{ids[0]}", headers=auth("user1"))
    await eventually(lambda: stack.core.watchdog.verdict.reason != "starting", within=5)
    status = await _status(stack.admin)
    assert (False, "inconclusive") == (status["failed_back"], status["health"])


async def test_the_latch_holds_until_rearmed(make_stack: MakeStack) -> None:
    """After a failback, neither ramp nor the file raises reads again until re-armed."""
    stack = await make_stack(read_percent=30)
    resp = await stack.admin.post("/failback", json={"reason": "drill"}, headers=ADMIN)
    assert (True, 0, "drill") == (
        (d := await resp.json())["failed_back"],
        d["read_percent"],
        d["reason"],
    )
    assert 409 == (await stack.admin.post("/ramp", json={"read_percent": 50}, headers=ADMIN)).status
    assert 409 == (await stack.admin.post("/promote", json={}, headers=ADMIN)).status
    text = stack.config.read_text()
    stack.config.write_text(text.replace("read_percent = 30", "read_percent = 60"))
    last = stack.core.holder
    await eventually(lambda: last.last is not None and last.last.outcome == "applied", within=5)
    assert (60, 0) == (last.current.routing.read_percent, stack.core.plane.state.read_percent)
    rearmed = await (await stack.admin.post("/rearm", json={}, headers=ADMIN)).json()
    assert (False, None, 0) == (rearmed["failed_back"], rearmed["reason"], rearmed["read_percent"])
    assert 200 == (await stack.admin.post("/ramp", json={"read_percent": 50}, headers=ADMIN)).status


async def test_writes_taken_by_new_as_primary_survive_a_failback(make_stack: MakeStack) -> None:
    """Promoted, new takes writes that legacy receives too; after failback, legacy has them."""
    stack = await make_stack()
    promoted = await stack.admin.post("/promote", json={"force": True}, headers=ADMIN)
    assert "new" == (await promoted.json())["primary"]
    made = []
    for i in range(4):
        resp = await stack.proxy.post(
            "/v1/memories", json={"title": f"p{i}", "content": "x"}, headers=auth("user2")
        )
        assert ("new", 201) == (resp.headers["X-Memshift-Served-By"], resp.status)
        made.append((await resp.json())["id"])
    patched = await stack.proxy.patch(
        f"/v1/memories/{made[0]}", json={"content": "edited"}, headers=auth("user2")
    )
    assert 200 == patched.status
    await stack.admin.post("/failback", json={"reason": "drill"}, headers=ADMIN)
    for memory_id in made:
        resp = await stack.proxy.get(f"/v1/memories/{memory_id}", headers=auth("user2"))
        assert ("legacy", 200) == (resp.headers["X-Memshift-Served-By"], resp.status)
    first = await (await stack.proxy.get(f"/v1/memories/{made[0]}", headers=auth("user2"))).json()
    assert "edited" == first["content"]


async def test_two_proxies_share_one_control_state(
    make_pg_url: Any, make_stack: MakeStack, make_proxy: MakeProxy
) -> None:
    """On one PostgreSQL state db, a failback on one proxy holds on the other, and a ramp too."""
    stack = await make_stack()
    state = make_pg_url()
    one = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state)
    two = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state)
    other = two[0].server.app[PROXY]
    await one[1].post("/ramp", json={"read_percent": 40}, headers=ADMIN)
    await eventually(lambda: other.plane.state.read_percent == 40, within=2.5)
    await one[1].post("/failback", json={"reason": "drill"}, headers=ADMIN)
    await eventually(lambda: other.plane.state.failed_back, within=2.5)
    status = await _status(two[1])
    assert (True, 0, "drill") == (status["failed_back"], status["read_percent"], status["reason"])


async def _steady(proxy: Any, ids: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for memory_id in ids:
            await proxy.get(f"/v1/memories/{memory_id}", headers=auth("user1"))
        await asyncio.sleep(0.01)


async def test_a_schedule_advances_on_healthy_traffic(make_stack: MakeStack) -> None:
    """Steps 20 → 50 → 100 are taken one after the other while the new store is healthy."""
    # Healthy here means no errors and no mismatches: two slow requests among a few
    # hundred on a shared machine must not trip the latency rule (tested on its own).
    stack = await make_stack(
        shadow_read_percent=100,
        sections={"rollback": {"min_samples": 5, "max_latency_ratio": 1000}, "routing": {}},
    )
    stack.config.write_text(
        stack.config.read_text()
        + (
            "\n[[routing.steps]]\nread_percent = 20\nhold_s = 1\n"
            "[[routing.steps]]\nread_percent = 50\nhold_s = 1\n"
            "[[routing.steps]]\nread_percent = 100\nhold_s = 1\n"
        )
    )
    ids = await _memories(stack.proxy, 3)
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(_steady(stack.proxy, ids, stop))
    try:
        await eventually(lambda: stack.core.plane.state.read_percent == 100, within=15)
    finally:
        stop.set()
        await traffic
    audit = (await (await stack.admin.get("/audit", headers=ADMIN)).json())["items"]
    taken = [e["change"]["read_percent"] for e in reversed(audit) if e["source"] == "schedule"]
    assert [20, 50, 100] == taken


async def test_a_schedule_stops_at_a_trip(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """A failing new store trips failback and the schedule moves no further."""

    stack = await make_stack()
    faulty = await make_forwarder(_url(stack.new), failing_reads)
    proxy, admin = await make_proxy(
        _url(stack.legacy), faulty, read_percent=20, sections={"rollback": {"min_samples": 10}}
    )
    core = proxy.server.app[PROXY]
    config = stack.config.parent / "memshift-1.toml"
    config.write_text(config.read_text() + "\n[[routing.steps]]\nread_percent = 50\nhold_s = 0\n")
    ids = await _memories(proxy, 3)
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(_steady(proxy, ids, stop))
    try:
        await eventually(lambda: core.plane.state.failed_back, within=5)
        await asyncio.sleep(1.5)
    finally:
        stop.set()
        await traffic
    assert (True, 0) == (core.plane.state.failed_back, core.plane.state.read_percent)
    audit = (await (await admin.get("/audit", headers=ADMIN)).json())["items"]
    assert [] == [e for e in audit if e["source"] == "schedule"]


async def test_a_trip_on_one_proxy_fails_back_the_other(
    make_pg_url: Any, make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """Proxy A sees new failing and trips; proxy B, on the same state db, fails back too."""

    stack = await make_stack()
    state = make_pg_url()
    faulty = await make_forwarder(_url(stack.new), failing_reads)
    a_proxy, _ = await make_proxy(
        _url(stack.legacy), faulty, state_url=state, read_percent=50, sections=ROLLBACK
    )
    b_proxy, b_admin = await make_proxy(
        _url(stack.legacy), _url(stack.new), state_url=state, read_percent=50
    )
    ids = await _memories(a_proxy, 3)
    for i in range(30):  # half the users read from new through A
        await a_proxy.get(f"/v1/memories/{ids[i % 3]}", headers=auth(f"user{i % 12}"))
    a, b = a_proxy.server.app[PROXY], b_proxy.server.app[PROXY]
    await eventually(lambda: a.plane.state.failed_back, within=5)
    await eventually(lambda: b.plane.state.failed_back, within=2.5)
    status = await _status(b_admin)
    assert (True, 0, True) == (
        status["failed_back"],
        status["read_percent"],
        status["reason"].startswith("error_rate"),
    )


async def test_one_caller_cannot_fail_back_a_migration(
    make_stack: MakeStack, make_proxy: MakeProxy, make_forwarder: MakeForwarder
) -> None:
    """New fails every read of one caller (its requests are odd, say) while four others
    read fine: judgement holds, naming why; once the failures come from three callers,
    it fails back."""
    failing = {"Bearer tok-user1"}

    async def fails_some(request: web.Request) -> web.Response | None:
        if request.method == "GET" and request.headers.get("Authorization") in failing:
            return web.json_response({"error": {"code": "x", "message": "x"}}, status=500)
        return None

    _stack, proxy, admin = await _through(
        make_stack, make_proxy, make_forwarder, fails_some, read_percent=100
    )
    core = proxy.server.app[PROXY]
    users = [f"user{n}" for n in range(1, 6)]
    own = {}
    for user in users:
        made = await proxy.post(
            "/v1/memories", json={"title": user, "content": "c"}, headers=auth(user)
        )
        own[user] = (await made.json())["id"]
    for i in range(60):
        user = users[i % 5]
        resp = await proxy.get(f"/v1/memories/{own[user]}", headers=auth(user))
        assert 200 == resp.status  # a failed read of new falls back to legacy
    verdict = core.watchdog.judge()
    assert not core.plane.state.failed_back
    assert "inconclusive" == verdict.state
    assert "of 1 caller(s) of 3 needed" in str(verdict.reason)
    failing.update({"Bearer tok-user2", "Bearer tok-user3"})
    for i in range(30):
        await proxy.get(f"/v1/memories/{own[users[i % 5]]}", headers=auth(users[i % 5]))
    await eventually(lambda: core.plane.state.failed_back, within=5)
    status = await _status(admin)
    assert status["reason"].startswith("error_rate")
    assert "of 3 callers" in status["reason"]

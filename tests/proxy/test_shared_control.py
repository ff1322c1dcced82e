"""Several instances on one PostgreSQL state db change the control state at the same moment."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from memshift.proxy.instance import Proxy
from memshift.proxy.keys import PROXY
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeProxy, MakeStack, auth
from tests.proxy.test_workload import assert_equal_stores


def _url(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


async def _changes(admin: Any, rng: random.Random, count: int) -> list[int]:
    """Ramp, promote, fail back and re-arm at random; return the statuses answered."""
    statuses = []
    for _ in range(count):
        action = rng.choice(["ramp", "ramp", "promote", "failback", "rearm"])
        body: dict[str, Any] = {}
        if action == "ramp":
            body = {"read_percent": rng.randrange(0, 101)}
        elif action == "failback":
            body = {"reason": "drill"}
        answer = await admin.post(f"/{action}", json=body, headers=ADMIN)
        statuses.append(answer.status)
    return statuses


async def test_two_instances_changing_at_once_converge_and_audit_each_change_once(
    make_pg_url: Any, make_stack: MakeStack, make_proxy: MakeProxy
) -> None:
    """Both instances end on the stored state, and the audit holds one entry per epoch."""
    stack = await make_stack(seed=0)
    state = make_pg_url()
    one = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state)
    two = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state)
    statuses = await asyncio.gather(
        _changes(one[1], random.Random(1), 60), _changes(two[1], random.Random(2), 60)
    )
    # 409: a ramp while the latch holds; never a 5xx, never a half-applied change.
    assert {200, 409} >= {s for batch in statuses for s in batch}
    first: Proxy = one[0].server.app[PROXY]
    second: Proxy = two[0].server.app[PROXY]
    await eventually(lambda: first.plane.state == second.plane.state, within=5)
    audit = await (await one[1].get("/audit?limit=1000", headers=ADMIN)).json()
    epochs = [item["epoch"] for item in audit["items"]]
    assert epochs == list(range(first.plane.state.epoch, 0, -1))  # each applied change once
    stored = await (await two[1].get("/status", headers=ADMIN)).json()
    assert stored["epoch"] == first.plane.state.epoch


async def _patcher(
    proxies: list[Any], ids: list[int], writer: int, rounds: int, log: list[tuple[int, str]]
) -> None:
    """Patch a few memories in turn, through both proxies, keeping what legacy answered."""
    for n in range(rounds):
        memory = ids[(writer + n) % len(ids)]
        proxy = proxies[(writer + n) % len(proxies)]
        title = f"w{writer}-{n}"
        answer = await proxy.patch(
            f"/v1/memories/{memory}", json={"title": title}, headers=auth("user1")
        )
        assert 200 == answer.status, await answer.text()
        log.append((memory, title))


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_writes_to_one_record_through_two_instances_reach_new_in_order(
    make_pg_url: Any, make_stack: MakeStack, make_proxy: MakeProxy, mode: str
) -> None:
    """Four writers patch two memories through two instances at once: new ends with
    what legacy ended with, each record's last write last, version for version."""
    stack = await make_stack(seed=2)
    state = make_pg_url()
    one = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state, write_mode=mode)
    two = await make_proxy(_url(stack.legacy), _url(stack.new), state_url=state, write_mode=mode)
    first: Proxy = one[0].server.app[PROXY]
    second: Proxy = two[0].server.app[PROXY]
    await eventually(lambda: first.peers.shared and second.peers.shared, within=5)
    ids = []
    for n in range(2):
        made = await one[0].post(
            "/v1/memories", json={"title": f"m{n}", "content": "x"}, headers=auth("user1")
        )
        ids.append((await made.json())["id"])
    log: list[tuple[int, str]] = []
    await asyncio.gather(*(_patcher([one[0], two[0]], ids, writer, 15, log) for writer in range(4)))
    for core in (first, second):  # every write mirrored, by whichever instance
        async with asyncio.timeout(30):
            while core.writes.jobs.active or (await core.writelog.figures())["backlog"]:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    await assert_equal_stores(stack.legacy, stack.new, first.idmap)

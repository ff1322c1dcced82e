"""Several instances on one PostgreSQL state db change the control state at the same moment."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from memshift.proxy.instance import Proxy
from memshift.proxy.keys import PROXY
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeProxy, MakeStack


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
    make_stack: MakeStack, make_proxy: MakeProxy, make_pg_url: Any
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

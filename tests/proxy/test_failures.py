"""When the secondary fails, clients never notice; what was not mirrored is kept."""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from memshift.proxy.keys import PROXY
from tests.helpers import eventually
from tests.proxy.conftest import ADMIN, MakeForwarder, MakeProxy, MakeStack, auth, echo_server


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_secondary_down_keeps_client_answer(make_stack: MakeStack) -> None:
    """With the new store unreachable, writes still answer 201 and the misses are kept."""
    stack = await make_stack()
    await stack.new.server.close()
    for i in range(3):
        resp = await stack.proxy.post(
            "/v1/memories", json={"title": f"t{i}", "content": "c"}, headers=auth("user1")
        )
        assert (201, "legacy") == (resp.status, resp.headers["X-Memshift-Served-By"])
    status = await (await stack.admin.get("/status", headers=ADMIN)).json()
    assert 3 == status["repair_backlog"]
    metrics = await (await stack.admin.get("/metrics", headers=ADMIN)).text()
    counted = re.search(
        r'memshift_mirror_writes_total\{outcome="backlog",store="new"\} (\S+)', metrics
    )
    assert counted is not None and float(counted[1]) >= 3  # replay attempts count too


async def test_secondary_refusal_is_kept_as_divergence(
    aiohttp_server: Any, make_proxy: MakeProxy, make_stack: MakeStack
) -> None:
    """A 4xx from the secondary for a write the primary took is kept with its answer."""
    stack = await make_stack()

    async def refuse(_request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "nope", "message": "refused"}}, status=422)

    fake_new = await echo_server(aiohttp_server, refuse)
    proxy, admin = await make_proxy(
        str(stack.legacy.make_url("")).rstrip("/"), str(fake_new.make_url("")).rstrip("/")
    )
    resp = await proxy.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    assert 201 == resp.status
    status = await (await admin.get("/status", headers=ADMIN)).json()
    assert (1, 0) == (status["divergent"], status["repair_backlog"])


async def test_unrouted_requests_go_to_the_primary_only(make_stack: MakeStack) -> None:
    """A write matching no route is not mirrored, and is counted."""
    stack = await make_stack(read_percent=100)
    resp = await stack.proxy.put("/v1/memories", json={}, headers=auth("user1"))
    assert (405, "legacy") == (resp.status, resp.headers["X-Memshift-Served-By"])
    metrics = await (await stack.admin.get("/metrics", headers=ADMIN)).text()
    assert 'memshift_unrouted_requests_total{method="PUT"} 1.0' in metrics
    assert 0 == stack.core.health.windows["new"].figures().requests


async def test_reads_fall_back_to_legacy_when_new_fails(make_stack: MakeStack) -> None:
    """At 100% reads, a new store that is down does not fail clients: legacy answers."""
    stack = await make_stack(read_percent=100)
    made = await (
        await stack.proxy.post(
            "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
        )
    ).json()
    await stack.new.server.close()
    resp = await stack.proxy.get(f"/v1/memories/{made['id']}", headers=auth("user1"))
    assert (200, "legacy", "c") == (
        resp.status,
        resp.headers["X-Memshift-Served-By"],
        (await resp.json())["content"],
    )


async def test_unmapped_reads_are_served_by_legacy(make_stack: MakeStack) -> None:
    """A record the new store does not have yet (no id pair) is read from legacy."""
    stack = await make_stack(read_percent=100)
    made = await (
        await stack.legacy.post(
            "/v1/memories", json={"title": "old", "content": "o"}, headers=auth("user1")
        )
    ).json()
    resp = await stack.proxy.get(f"/v1/memories/{made['id']}", headers=auth("user1"))
    assert (200, "legacy", made["id"]) == (
        resp.status,
        resp.headers["X-Memshift-Served-By"],
        (await resp.json())["id"],
    )
    metrics = await (await stack.admin.get("/metrics", headers=ADMIN)).text()
    assert 'memshift_read_fallbacks_total{reason="unmapped_request"} 1.0' in metrics


async def test_config_file_edit_applies_live(make_stack: MakeStack) -> None:
    """Editing read_percent in the file takes effect within 2 s; a bad edit is refused."""
    stack = await make_stack()
    text = stack.config.read_text()
    stack.config.write_text(text.replace("[routing]", "[routing]\nread_percent = 45"))
    await eventually(lambda: stack.core.plane.state.read_percent == 45, within=2)
    doc = await (await stack.admin.get("/status", headers=ADMIN)).json()
    assert (45, 2) == (doc["read_percent"], doc["epoch"])
    with capture_logs() as logs:
        stack.config.write_text(text.replace("[routing]", "[routing]\nread_percent = 145"))
        await eventually(lambda: any(e["event"] == "config_rejected" for e in logs), within=2)
    assert 45 == stack.core.plane.state.read_percent


async def test_equal_idempotency_keys_of_two_clients_both_mirror(make_stack: MakeStack) -> None:
    """Two users sending the same Idempotency-Key each get their write, on both stores."""
    stack = await make_stack()
    for user in ("user1", "user2"):
        resp = await stack.proxy.post(
            "/v1/memories",
            json={"title": user, "content": "c"},
            headers={**auth(user), "Idempotency-Key": "k-1"},
        )
        assert 201 == resp.status
    again = await stack.proxy.post(
        "/v1/memories",
        json={"title": "user1", "content": "c"},
        headers={**auth("user1"), "Idempotency-Key": "k-1"},
    )
    assert "true" == again.headers["Idempotent-Replayed"]
    assert 0 == (await stack.core.writelog.figures())["backlog"]
    copies = await (
        await stack.new.get("/v1/memories", headers={"Authorization": "Bearer tok-svc"})
    ).json()
    assert ["user1", "user2"] == [m["title"] for m in copies["items"] if m["owner"] != "seed"]


async def test_writes_the_primary_refuses_are_not_mirrored(make_stack: MakeStack) -> None:
    """A 4xx from the primary goes to the client as it is, and the secondary sees nothing."""
    stack = await make_stack()
    resp = await stack.proxy.post("/v1/memories", json={"title": ""}, headers=auth("user1"))
    assert (422, "validation_error", "legacy") == (
        resp.status,
        (await resp.json())["error"]["code"],
        resp.headers["X-Memshift-Served-By"],
    )
    assert 0 == stack.core.health.windows["new"].figures().requests
    assert 0 == (await stack.core.writelog.figures())["backlog"]


@pytest.mark.parametrize(("failures", "backlogged"), [(0, 0), (2, 0), (3, 1)])
async def test_a_mirrored_write_is_tried_retry_attempts_times(
    make_stack: MakeStack,
    make_proxy: MakeProxy,
    make_forwarder: MakeForwarder,
    failures: int,
    backlogged: int,
) -> None:
    """The first attempt, then the rest under the retry policy: 3 in all, no more."""
    stack = await make_stack(seed=1)
    seen = 0

    async def flaky(request: web.Request) -> web.StreamResponse | None:
        nonlocal seen
        if request.method != "POST":
            return None
        seen += 1
        if seen <= failures:
            return web.json_response({"error": {"code": "busy", "message": "busy"}}, status=503)
        return None

    faulty = await make_forwarder(str(stack.new.make_url("")).rstrip("/"), flaky)
    proxy, _ = await make_proxy(
        str(stack.legacy.make_url("")).rstrip("/"),
        faulty,
        sections={"mirror": {"retry_attempts": 3, "retry_initial_s": 0.01, "retry_max_s": 0.05}},
    )
    made = await proxy.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    assert 201 == made.status
    assert min(failures + 1, 3) == seen
    assert backlogged == (await proxy.server.app[PROXY].writelog.figures())["backlog"]

"""The admin API: its token, the status document, ramp, audit and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from memshift.cli import main
from tests.proxy.conftest import ADMIN, ADMIN_TOKEN, MakeStack, auth


@pytest.mark.parametrize("path", ["/status", "/audit", "/metrics"])
async def test_admin_needs_its_token(make_stack: MakeStack, path: str) -> None:
    """Without the admin token (or with a store's token) the admin API answers 401."""
    stack = await make_stack()
    for headers in ({}, {"Authorization": "Bearer tok-svc"}, auth("user1")):
        resp = await stack.admin.get(path, headers=headers)
        assert (401, "unauthorized") == (resp.status, (await resp.json())["error"]["code"])
    assert 200 == (await stack.admin.get("/healthz")).status


async def test_status_document(make_stack: MakeStack) -> None:
    """GET /status has every field of the contract (and the backlog's), and figures move."""
    stack = await make_stack()
    await stack.proxy.get("/v1/stats", headers=auth("user1"))
    doc = await (await stack.admin.get("/status", headers=ADMIN)).json()
    assert {
        "primary",
        "read_percent",
        "shadow_read_percent",
        "write_mode",
        "failed_back",
        "reason",
        "epoch",
        "repair_backlog",
        "stores",
    } <= set(doc)
    assert (0, False, 0) == (
        doc["repair_backlog_age_s"],
        doc["repair_backlog_alert"],
        doc["divergent"],
    )
    assert ("legacy", 0, False, None, 0) == (
        doc["primary"],
        doc["read_percent"],
        doc["failed_back"],
        doc["reason"],
        doc["repair_backlog"],
    )
    assert {
        "requests",
        "errors",
        "error_rate",
        "p50_ms",
        "p99_ms",
        "callers",
        "error_callers",
    } == set(doc["stores"]["new"])
    assert 1 == doc["stores"]["legacy"]["requests"]


async def test_ramp_changes_state_and_is_audited(make_stack: MakeStack) -> None:
    """POST /ramp sets the read percent, bumps the epoch and writes the audit log."""
    stack = await make_stack()
    resp = await stack.admin.post(
        "/ramp", json={"read_percent": 35, "reason": "canary"}, headers=ADMIN
    )
    doc = await resp.json()
    assert (200, 35, 2) == (resp.status, doc["read_percent"], doc["epoch"])
    audit = await (await stack.admin.get("/audit", headers=ADMIN)).json()
    first = audit["items"][0]
    assert (2, "admin", {"read_percent": 35}, "canary") == (
        first["epoch"],
        first["source"],
        first["change"],
        first["reason"],
    )


@pytest.mark.parametrize(
    "body",
    [
        {"read_percent": 101},
        {"read_percent": "50"},
        {"read_percent": 5.5},
        {},
        {"read_percent": 5, "x": 1},
    ],
)
async def test_bad_ramp_is_refused(make_stack: MakeStack, body: dict[str, Any]) -> None:
    """A ramp outside 0..100, of the wrong type or with unknown fields is 422; nothing changes."""
    stack = await make_stack()
    resp = await stack.admin.post("/ramp", json=body, headers=ADMIN)
    assert 422 == resp.status
    assert 1 == (await (await stack.admin.get("/status", headers=ADMIN)).json())["epoch"]


async def test_metrics_are_prometheus_text(make_stack: MakeStack) -> None:
    """/metrics exposes requests, latency, epoch and read percent in Prometheus format."""
    stack = await make_stack()
    await stack.proxy.post(
        "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
    )
    resp = await stack.admin.get("/metrics", headers=ADMIN)
    text = await resp.text()
    assert resp.content_type == "text/plain"
    for name in (
        "memshift_upstream_requests_total{",
        "memshift_upstream_latency_seconds_bucket{",
        "memshift_client_requests_total{",
        "memshift_control_epoch 1.0",
        "memshift_read_percent 0.0",
        'purpose="mirror"',
    ):
        assert name in text, name


async def test_cli_status_and_ramp(
    make_stack: MakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """memshift ramp and status talk to a real admin API."""
    stack = await make_stack()
    base = str(stack.admin.make_url("")).rstrip("/")
    code = await asyncio.to_thread(main, ["ramp", "20", "--admin", base, "--token", ADMIN_TOKEN])
    assert 0 == code
    code = await asyncio.to_thread(main, ["status", "--admin", base, "--token", ADMIN_TOKEN])
    out = capsys.readouterr().out
    assert (0, True, True) == (code, "reads to new  20%" in out, "last changes" in out)
    code = await asyncio.to_thread(main, ["status", "--admin", base, "--token", "wrong"])
    assert (1, "401" in capsys.readouterr().err) == (code, True)


async def test_a_large_backlog_raises_the_alert(make_stack: MakeStack) -> None:
    """Past [mirror] backlog_alert waiting writes, /status says so and the log shouts."""
    stack = await make_stack(sections={"mirror": {"backlog_alert": 2}})
    await stack.new.server.close()
    alerts = []
    for i in range(2):
        await stack.proxy.post(
            "/v1/memories", json={"title": f"t{i}", "content": "c"}, headers=auth("user1")
        )
        with capture_logs() as logs:
            doc = await (await stack.admin.get("/status", headers=ADMIN)).json()
        alerts.append(
            (
                doc["repair_backlog"],
                doc["repair_backlog_alert"],
                "repair_backlog_high" in [e["event"] for e in logs],
            )
        )
    assert [(1, False, False), (2, True, True)] == alerts


async def test_the_admin_api_is_described_whole(make_stack: MakeStack) -> None:
    """/openapi.json (no token) describes every admin route but the console's, and only
    those; the store's own description is served by the store, also without a token."""
    stack = await make_stack()
    answer = await stack.admin.get("/openapi.json")
    assert 200 == answer.status
    described = {
        (method, path) for path, item in (await answer.json())["paths"].items() for method in item
    }
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in stack.admin.server.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not route.resource.canonical.startswith("/console")
    }
    assert served == described
    store_doc = await (await stack.legacy.get("/openapi.json")).json()
    assert "/v1/memories/{id}" in store_doc["paths"]

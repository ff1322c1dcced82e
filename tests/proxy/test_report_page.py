"""The report page in a real headless browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.proxy.conftest import ADMIN, ADMIN_TOKEN, MakeStack, auth

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_report_page_renders_the_report(make_stack: MakeStack) -> None:
    """report.html renders with no console error and shows the numbers of /report."""
    playwright = pytest.importorskip("playwright.async_api")
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    stack = await make_stack(shadow_read_percent=100)
    made = await (
        await stack.proxy.post(
            "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
        )
    ).json()
    for _ in range(3):
        await stack.proxy.get(f"/v1/memories/{made['id']}", headers=auth("user1"))
        await stack.proxy.get("/v1/contexts", headers=auth("user1"))
    async with asyncio.timeout(10):
        while stack.core.shadows.active:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    report = await (await stack.admin.get("/report", headers=ADMIN)).json()
    problems: list[str] = []
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(
                extra_http_headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            answer = await page.goto(str(stack.admin.make_url("/report.html")))
            assert answer is not None and 200 == answer.status
            totals = await page.inner_text("#totals")
            routes = await page.inner_text("#routes")
            chart = await page.query_selector("svg#chart polyline")
            primary = await page.inner_text("#primary")
        finally:
            await browser.close()
    assert [] == problems
    assert f"compared {report['totals']['compared']}" in totals
    assert ("legacy", True) == (primary, chart is not None)
    for route in report["routes"]:
        assert route["route"] in routes


async def test_report_page_needs_the_token(make_stack: MakeStack) -> None:
    """Without the admin token the page is refused like every admin call."""
    stack = await make_stack()
    assert 401 == (await stack.admin.get("/report.html")).status
    page = await stack.admin.get("/report.html", headers=ADMIN)
    assert ("text/html", True) == (
        page.content_type,
        "default-src 'none'" in page.headers["Content-Security-Policy"],
    )

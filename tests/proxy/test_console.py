"""The operator console in a real headless browser (Debian's Chromium, driven by Playwright).

Signing in, what it shows, what it does, and what it refuses; screenshots of a healthy
and of a failed-back migration are written to ``MEMSHIFT_SCREENSHOTS`` when it is set
(``docs/`` holds the ones taken so).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.proxy.conftest import ADMIN, ADMIN_TOKEN, MakeStack, auth
from tests.proxy.test_report_page import CHROMIUM, FLAGS

SHOTS = os.environ.get("MEMSHIFT_SCREENSHOTS")


async def _traffic(stack: Any) -> None:
    made = await (
        await stack.proxy.post(
            "/v1/memories", json={"title": "t", "content": "c"}, headers=auth("user1")
        )
    ).json()
    for _ in range(12):
        await stack.proxy.get(f"/v1/memories/{made['id']}", headers=auth("user1"))
        await stack.proxy.get("/v1/contexts", headers=auth("user1"))
    async with asyncio.timeout(10):
        while stack.core.shadows.active:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def _showing(page: Any, selector: str, text: str, within: float = 10) -> None:
    """Wait until the element shows ``text`` (polled from here: the page's CSP forbids
    the evaluated predicates Playwright would inject)."""
    async with asyncio.timeout(within):
        while text not in await page.inner_text(selector):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _shot(page: Any, name: str) -> None:
    if SHOTS:
        await asyncio.to_thread(Path(SHOTS).mkdir, parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


async def test_the_console_signs_in_shows_the_migration_and_acts_on_it(
    make_stack: MakeStack,
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    if not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed")
    # Verdicts after a few reads; no failback on a p99 of a few dozen reads, which a
    # busy machine can make three times legacy's: the drill below fails back itself.
    rollback = {"min_samples": 5, "max_latency_ratio": 1000}
    stack = await make_stack(seed=0, shadow_read_percent=100, sections={"rollback": rollback})
    await _traffic(stack)
    console = str(stack.admin.make_url("/console"))
    problems: list[str] = []
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))

            await page.goto(console)
            await page.fill("#token", "not-the-token")
            await page.click("button[type=submit]")
            assert "That is not the admin token." in await page.inner_text("[role=alert]")
            problems.clear()  # the refused sign-in's 401 is the browser's error, and expected

            await page.fill("#token", ADMIN_TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_selector("#verdicts tbody tr")
            cookie = next(
                c for c in await page.context.cookies() if c["name"] == "memshift_console"
            )
            assert (True, "Strict") == (cookie["httpOnly"], cookie["sameSite"])
            assert "primary legacy" in await page.inner_text("#state")
            assert "memories.item" in await page.inner_text("#verdicts")
            await _shot(page, "console-healthy.png")

            # every control is reachable by keyboard and named
            unnamed = await page.evaluate(
                """() => [...document.querySelectorAll('button, input')].filter(e =>
                    e.tabIndex < 0 || !(e.textContent.trim() || (e.id &&
                    document.querySelector('label[for=' + e.id + ']')) || e.closest('label'))
                  ).map(e => e.outerHTML)"""
            )
            assert [] == unnamed

            await page.click("[data-ramp='25']")
            await _showing(page, "#state", "reads to new 25%")

            await page.fill("#reason", "drill: new is slow")
            await page.click("#failback")
            await page.wait_for_selector("#latch:not([hidden])")
            assert "drill: new is slow" in await page.inner_text("#latch")
            await _traffic(stack)
            await page.wait_for_timeout(2500)  # one refresh with the new figures
            await _shot(page, "console-failed-back.png")

            await page.fill("#reason", "")
            await page.click("#rearm")
            await page.wait_for_selector("#latch", state="hidden")

            await page.click("#promote")  # too soon after the rearm: refused, with why
            await _showing(page, "#result", "Refused (409)")
            assert "inconclusive" in await page.inner_text("#result")
            problems[:] = [p for p in problems if "409" not in p]  # the refusal, as expected
            await page.check("#force")
            await page.click("#promote")
            await _showing(page, "#state", "primary new")

            await page.fill("#reason", "after the drill")
            await page.click("#reset")
            await _showing(page, "#window", "reset: after the drill")

            # a change without the CSRF token is refused, even signed in
            forged = await page.evaluate(
                """async () => (await fetch('/ramp', {method: 'POST', credentials: 'same-origin',
                    headers: {'Content-Type': 'application/json'},
                    body: JSON.stringify({read_percent: 100})})).status"""
            )
            assert 403 == forged
            problems[:] = [p for p in problems if "403" not in p]

            await page.click("#signout")
            await page.wait_for_selector("#token")
            after = await page.evaluate("async () => (await fetch('/status')).status")
            assert 401 == after
            problems[:] = [p for p in problems if "401" not in p]
        finally:
            await browser.close()
    assert [] == problems
    audit = (await (await stack.admin.get("/audit?limit=20", headers=ADMIN)).json())["items"]
    by_console = [item for item in audit if item["source"] == "console"]
    assert len(by_console) >= 5  # ramp, failback, rearm, promote (forced), reset
    assert any(item["reason"].startswith("forced past") for item in by_console)


async def test_the_console_page_is_locked_down(make_stack: MakeStack) -> None:
    """Without a session: the sign-in page, a strict CSP, and no admin data."""
    stack = await make_stack(seed=0)
    page = await stack.admin.get("/console")
    text = await page.text()
    csp = page.headers["Content-Security-Policy"]
    assert (200, True, False) == (page.status, 'name="token"' in text, "csrf-token" in text)
    assert "default-src 'none'" in csp and "script-src 'self'" in csp
    assert 401 == (await stack.admin.get("/status")).status
    refused = await stack.admin.post("/console/signin", data={"token": "wrong"})
    assert (401, None) == (refused.status, refused.cookies.get("memshift_console"))

"""Small helpers shared by tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(check: Callable[[], bool], within: float = 3.0) -> None:
    """Wait until ``check()`` holds; fail the test if it does not within ``within`` s."""
    async with asyncio.timeout(within):
        while not check():  # noqa: ASYNC110 (polls state that other code changes)
            await asyncio.sleep(0.05)

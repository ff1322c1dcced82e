"""The load generator through the proxy: every write it makes reaches both stores."""

from __future__ import annotations

import pytest

from memshift.loadtest.mix import parse_sizes
from memshift.loadtest.run import LoadTest, Options
from tests.proxy.conftest import MakeStack
from tests.proxy.test_workload import TOLERANT, assert_stores_match, drained


@pytest.mark.parametrize("write_mode", ["sync", "async"])
async def test_a_load_test_through_the_proxy_leaves_both_stores_equal(
    make_stack: MakeStack, write_mode: str
) -> None:
    stack = await make_stack(
        read_percent=50, shadow_read_percent=100, write_mode=write_mode, sections=TOLERANT
    )
    target = str(stack.proxy.make_url("")).rstrip("/")
    options = Options(
        target=target,
        token="tok-user1",
        duration_s=1.5,
        concurrency=4,
        sizes=parse_sizes("100,5k,50k"),
    )
    async with LoadTest(options) as test:
        await test.seed(8)
        doc = await test.run()
    assert 0 == doc["total"]["errors"], doc["operations"]
    assert doc["operations"]["update"]["count"] > 0
    await drained(stack)
    await assert_stores_match(stack)
    assert 0 == (await stack.core.writelog.figures())["backlog"]

"""``memshift up --demo-traffic``: a gentle, endless load test so the report and metrics move."""

from __future__ import annotations

import asyncio

import structlog

from memshift.loadtest.mix import parse_sizes
from memshift.loadtest.run import LoadTest, LoadtestError, Options

log = structlog.get_logger("memshift.demo")

DEMO_RATE = 5.0  # requests a second: visible in the report, idle for the machine
DEMO_SIZES = "100=50,1000=30,10000=15,100000=5"
WINDOW_S = 30.0
RETRY_S = 5.0


async def demo_traffic(target: str, token: str) -> None:
    """Send the default mix to ``target`` at a walking pace until cancelled."""
    options = Options(
        target=target, token=token, concurrency=2, rate=DEMO_RATE, sizes=parse_sizes(DEMO_SIZES)
    )
    async with LoadTest(options) as test:
        while True:
            try:
                await test.seed(10)
                break
            except LoadtestError as exc:
                log.warning("demo_traffic_waiting", problem=str(exc))
                await asyncio.sleep(RETRY_S)
        log.info("demo_traffic_started", target=target, rate_per_s=DEMO_RATE)
        while True:
            doc = await test.run(duration_s=WINDOW_S)
            total = doc["total"]
            log.info(
                "demo_traffic",
                requests=total["count"],
                errors=total["errors"],
                rps=total["throughput_rps"],
                p50_ms=total["p50_ms"],
            )

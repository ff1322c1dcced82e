"""The client's cost of shadow reads: read latency at shadow percent 0 and 100.

    python -m benchmarks.shadow_cost [--reads N] [--concurrency C]

Two reference stores (SQLite) and ``memshift serve`` run as separate processes; reads
of existing memories go through a proxy that compares none of them, then through one
that compares every one (on its bounded scheduler, off the client's path). Both
proxies serve from legacy (read percent 0).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, create_memories, drive, proxy_process, report, store_process


async def reads(target: str, ids: list[int], count: int, concurrency: int) -> dict[str, float]:
    async with aiohttp.ClientSession(headers=USER) as http:

        async def read(i: int) -> None:
            async with http.get(f"{target}/v1/memories/{ids[i % len(ids)]}") as resp:
                assert resp.status == 200
                await resp.read()

        return await drive(count, concurrency, read)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    results = {}
    with store_process("legacy") as legacy, store_process("new") as new:
        with proxy_process(legacy.url, new.url) as proxy:
            ids = asyncio.run(create_memories(proxy, ["x" * 1000] * 200))
            results["shadow 0%"] = asyncio.run(reads(proxy, ids, args.reads, args.concurrency))
        with proxy_process(legacy.url, new.url, shadow=100) as proxy:
            results["shadow 100%"] = asyncio.run(reads(proxy, ids, args.reads, args.concurrency))
    base = results["shadow 0%"]
    rows = [
        [
            name,
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['p50_ms'] / base['p50_ms'] - 1:+.1%}",
        ]
        for name, r in results.items()
    ]
    report(
        "shadow_cost",
        ["reads", "req/s", "p50_ms", "p99_ms", "p50 vs 0%"],
        rows,
        {"reads": args.reads, "concurrency": args.concurrency, "results": results},
    )


if __name__ == "__main__":
    main()

"""Client cost of mirroring: writes direct, through memshift sync, and through memshift async.

    python -m benchmarks.mirror_modes [--writes N] [--concurrency C]

Two reference stores (SQLite) and ``memshift serve`` run as separate processes; the
same load generator creates memories of 200 bytes against the legacy store directly,
then through a proxy mirroring synchronously, then through one mirroring
asynchronously (each proxy with its own state db, write-ahead log included).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, drive, proxy_process, report, store_process


async def creates(target: str, writes: int, concurrency: int) -> dict[str, float]:
    async with aiohttp.ClientSession(headers=USER) as http:

        async def create(i: int) -> None:
            async with http.post(
                f"{target}/v1/memories", json={"title": f"w{i}", "content": "x" * 200}
            ) as resp:
                assert resp.status == 201, await resp.text()

        return await drive(writes, concurrency, create)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = {}
    with store_process("legacy") as legacy, store_process("new") as new:
        results["direct"] = asyncio.run(creates(legacy.url, args.writes, args.concurrency))
        for mode in ("sync", "async"):
            with proxy_process(legacy.url, new.url, write_mode=mode) as proxy:
                results[mode] = asyncio.run(creates(proxy, args.writes, args.concurrency))
    base = results["direct"]["rps"]
    rows = [
        [
            name,
            f"{r['rps']:.0f}",
            f"{r['rps'] / base:.2f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
        ]
        for name, r in results.items()
    ]
    report(
        "mirror_modes",
        ["writes", "req/s", "vs direct", "p50_ms", "p99_ms"],
        rows,
        {"writes": args.writes, "concurrency": args.concurrency, "results": results},
    )


if __name__ == "__main__":
    main()

"""Write and read throughput of both engines on SQLite, side by side.

    python -m benchmarks.store_throughput [--requests N] [--concurrency C]

Each engine runs as its own store process; the client creates memories of real text
(1-10 KiB), then reads them back by id, with ``C`` requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, corpus, drive, report, slices, store_process


async def run(url: str, texts: list[str], concurrency: int) -> dict[str, dict[str, float]]:
    ids: list[int] = [0] * len(texts)
    async with aiohttp.ClientSession(headers=USER) as http:

        async def create(i: int) -> None:
            async with http.post(
                f"{url}/v1/memories", json={"title": f"doc {i}", "content": texts[i]}
            ) as resp:
                assert resp.status == 201, await resp.text()
                ids[i] = (await resp.json())["id"]

        async def read(i: int) -> None:
            async with http.get(f"{url}/v1/memories/{ids[i]}") as resp:
                assert resp.status == 200
                await resp.read()

        writes = await drive(len(texts), concurrency, create)
        reads = await drive(len(texts), concurrency, read)
    return {"write": writes, "read": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    texts = slices(corpus(), args.requests, 1024, 10 * 1024)
    results, rows = {}, []
    for engine in ("legacy", "new"):
        with store_process(engine) as store:
            results[engine] = asyncio.run(run(store.url, texts, args.concurrency))
        for kind, r in results[engine].items():
            rows.append(
                [engine, kind, f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
            )
    report(
        "store_throughput",
        ["engine", "op", "req/s", "p50_ms", "p99_ms"],
        rows,
        {"requests": args.requests, "concurrency": args.concurrency, "results": results},
    )


if __name__ == "__main__":
    main()

"""The proxy's cost: direct access to a store versus through memshift, in one run.

    python -m benchmarks.proxy_overhead [--reads N] [--writes N] [--concurrency C]

Two reference stores (SQLite) and ``memshift serve`` run as separate processes; the
same load generator drives, in turn, reads (GET /v1/memories/{id}) and creates
(POST /v1/memories, 200 bytes) against the legacy store directly and through the
proxy (read percent 0, sync mirroring to the new store).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, drive, proxy_process, report, store_process


async def measure(
    target: str, reads: int, writes: int, concurrency: int
) -> dict[str, dict[str, float]]:
    async with aiohttp.ClientSession(headers=USER) as http:
        ids: list[int] = []

        async def create(i: int) -> None:
            async with http.post(
                f"{target}/v1/memories", json={"title": f"w{i}", "content": "x" * 200}
            ) as resp:
                assert resp.status == 201, await resp.text()
                ids.append((await resp.json())["id"])

        async def read(i: int) -> None:
            async with http.get(f"{target}/v1/memories/{ids[i % len(ids)]}") as resp:
                assert resp.status == 200
                await resp.read()

        written = await drive(writes, concurrency, create)
        served = await drive(reads, concurrency, read)
    return {"write": written, "read": served}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--writes", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with (
        store_process("legacy") as legacy,
        store_process("new") as new,
        proxy_process(legacy.url, new.url) as proxy,
    ):
        direct = asyncio.run(measure(legacy.url, args.reads, args.writes, args.concurrency))
        proxied = asyncio.run(measure(proxy, args.reads, args.writes, args.concurrency))
    rows = []
    for op in ("read", "write"):
        d, p = direct[op], proxied[op]
        rows.append(
            [
                op,
                f"{d['rps']:.0f}",
                f"{p['rps']:.0f}",
                f"{p['rps'] / d['rps']:.2f}",
                f"{d['p50_ms']:.2f}",
                f"{p['p50_ms']:.2f}",
                f"{d['p99_ms']:.2f}",
                f"{p['p99_ms']:.2f}",
            ]
        )
    report(
        "proxy_overhead",
        [
            "op",
            "direct_rps",
            "proxy_rps",
            "ratio",
            "direct_p50",
            "proxy_p50",
            "direct_p99",
            "proxy_p99",
        ],
        rows,
        {
            "direct": direct,
            "proxied": proxied,
            "concurrency": args.concurrency,
            "note": "proxied writes are mirrored to the new store before the answer (sync)",
        },
    )


if __name__ == "__main__":
    main()

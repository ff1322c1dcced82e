"""Peak RSS growth of a store process while listing 2,000 memories of 100 KiB each.

    python -m benchmarks.store_list_memory [--count N] [--size BYTES]

The store's peak RSS (VmHWM) is reset after the memories are written, then every page
of ``GET /v1/memories`` is fetched; the growth is the new peak minus the RSS before.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, corpus, create_memories, report, slices, store_process

MIB = 1024 * 1024


async def list_all(url: str, page: int) -> int:
    seen = 0
    cursor = ""
    async with aiohttp.ClientSession(headers=USER) as http:
        while True:
            async with http.get(
                f"{url}/v1/memories", params={"limit": page, "cursor": cursor}
            ) as resp:
                body = await resp.json()
            seen += len(body["items"])
            if body["next_cursor"] is None:
                return seen
            cursor = body["next_cursor"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--size", type=int, default=100 * 1024)
    args = parser.parse_args()
    texts = slices(corpus(), args.count, args.size, args.size)
    rows, data = [], {}
    for engine in ("new", "legacy"):
        with store_process(engine) as store:
            asyncio.run(create_memories(store.url, texts))
            for page in (100, 1000):
                before = store.status("VmRSS")
                store.reset_peak()
                seen = asyncio.run(list_all(store.url, page))
                growth = store.status("VmHWM") - before
                rows.append([engine, seen, page, f"{before / MIB:.1f}", f"{growth / MIB:.2f}"])
                data[f"{engine}_page_{page}"] = {
                    "listed": seen,
                    "rss_before": before,
                    "peak_growth": growth,
                }
    report(
        "store_list_memory",
        ["engine", "listed", "page", "rss_before_MiB", "peak_growth_MiB"],
        rows,
        data,
    )


if __name__ == "__main__":
    main()

"""Stored bytes of the new engine versus legacy, on real text memories of 10-100 KiB.

python -m benchmarks.store_storage [--count N]
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from benchmarks.harness import USER, corpus, create_memories, report, slices, store_process


async def fill(url: str, texts: list[str]) -> dict[str, int]:
    """Create one memory per text, then return the store's stats."""
    await create_memories(url, texts)
    async with aiohttp.ClientSession(headers=USER) as http, http.get(f"{url}/v1/stats") as resp:
        stats: dict[str, int] = await resp.json()
        return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=400)
    args = parser.parse_args()
    texts = slices(corpus(), args.count, 10 * 1024, 100 * 1024)
    results = {}
    for engine in ("legacy", "new"):
        with store_process(engine) as store:
            results[engine] = asyncio.run(fill(store.url, texts))
    ratio = results["new"]["stored_bytes"] / results["legacy"]["stored_bytes"]
    rows = [
        [
            e,
            r["memories"],
            r["logical_bytes"],
            r["stored_bytes"],
            f"{r['stored_bytes'] / r['logical_bytes']:.1%}",
        ]
        for e, r in results.items()
    ]
    report(
        "store_storage",
        ["engine", "memories", "logical_bytes", "stored_bytes", "stored/logical"],
        rows,
        {"results": results, "new_over_legacy": ratio},
    )
    print(f"new engine stores {ratio:.1%} of legacy's bytes (target: at most 35%)")


if __name__ == "__main__":
    main()

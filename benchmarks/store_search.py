"""Search latency at 1,000, 10,000 and 100,000 memories, on both engines (SQLite).

    python -m benchmarks.store_search [--sizes 1000,10000,100000] [--engines legacy,new]

Memories are slices of real text (0.5-2 KiB). They are written with the store's own
``create_memory`` (the code behind POST /v1/memories) in large transactions, to seed
100,000 quickly; queries then go over HTTP to a store process on that database:

- ``rare``: a term planted in 5 memories, whatever the size of the store;
- ``rare+common``: that term AND a word found in most memories;
- ``one_percent``: a term planted in 1% of memories (its matches grow with the store);
- ``common``: a word found in most memories (the worst case: every match is scored).

An index keeps ``rare`` and ``rare+common`` flat as the store grows tenfold; a scan
would grow with it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

import aiohttp
from sqlalchemy import Connection

from benchmarks.harness import USER, corpus, report, slices, store_process
from memshift.database import Database
from memshift.loadtest.stats import percentile
from memshift.store import memories
from memshift.store.app import prepare_store
from memshift.store.call import Call
from memshift.store.content import BlobContent, ContentStore, PlainContent
from memshift.store.tokens import Principal

QUERIES = {
    "rare": "quasarneedle",
    "rare+common": "quasarneedle self",
    "one_percent": "pulsarmarker",
    "common": "the",
}
RUNS = 100


def seed(db: Database, content: ContentStore, texts: list[str], start: int, stop: int) -> None:
    """Create memories ``start..stop-1`` through the store's own create path."""
    who = Principal("bench")
    for at in range(start, stop, 1000):

        def batch(conn: Connection, at: int = at) -> None:
            for i in range(at, min(at + 1000, stop)):
                text = texts[i % len(texts)]
                if i < 5:
                    text += " quasarneedle"
                if i % 100 == 0:
                    text += " pulsarmarker"
                memories.create_memory(
                    conn, Call(who, content), {"title": f"m{i}", "content": text}
                )

        db.write_sync(batch)


async def measure(url: str) -> dict[str, dict[str, float]]:
    out = {}
    async with aiohttp.ClientSession(headers=USER) as http:
        for name, q in QUERIES.items():
            times, total = [], 0
            for _ in range(RUNS):
                started = time.perf_counter()
                async with http.get(f"{url}/v1/search", params={"q": q, "limit": 10}) as resp:
                    body = await resp.json()
                times.append(time.perf_counter() - started)
                total = body["total"]
            out[name] = {
                "matches": total,
                "p50_ms": percentile(times, 50) * 1000,
                "p99_ms": percentile(times, 99) * 1000,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--engines", default="legacy,new")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    texts = slices(corpus(), 20_000, 512, 2048, seed=11)
    rows, data = [], {}
    for engine in args.engines.split(","):
        content: ContentStore = (
            PlainContent()
            if engine == "legacy"
            else BlobContent(level=3, compress_min_bytes=1024, chunk_bytes=1 << 20)
        )
        with tempfile.TemporaryDirectory(prefix="memshift-search-") as tmp:
            url = f"sqlite:///{tmp}/{engine}.db"
            done = 0
            for size in sizes:
                db = Database(url)
                prepare_store(db, engine, content)
                started = time.perf_counter()
                seed(db, content, texts, done, size)
                print(
                    f"{engine}: seeded {size} in {time.perf_counter() - started:.0f}s", flush=True
                )
                db.close()
                done = size
                with store_process(engine, url) as store:
                    found = asyncio.run(measure(store.url))
                data[f"{engine}_{size}"] = found
                rows += [
                    [engine, size, q, r["matches"], f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}"]
                    for q, r in found.items()
                ]
    report(
        "store_search",
        ["engine", "memories", "query", "matches", "p50_ms", "p99_ms"],
        rows,
        {"runs_per_query": RUNS, "results": data},
    )


if __name__ == "__main__":
    main()

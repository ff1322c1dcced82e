"""What the write-ahead log costs, with group commit and without.

    python -m benchmarks.write_log [--writes N] [--concurrency C]

Each logged write is a mirrored create as on the proxy's hot path: its intent (waited
for), then its id pair and its end (clean-up, which nobody waits for); ``C`` writes
are in flight at once, on a SQLite state db. Without group commit, each operation is
a transaction of its own, waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time

from benchmarks.harness import report
from memshift.loadtest.stats import percentile
from memshift.shadow.groupcommit import GroupCommit
from memshift.shadow.idmap import IdMap
from memshift.shadow.writelog import WriteLog
from memshift.statedb import open_state


async def run(writes: int, concurrency: int, grouped: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="memshift-wal-") as tmp:
        db = open_state(f"sqlite:///{tmp}/state.db")
        group = GroupCommit(db)
        log = WriteLog(db, group)
        idmap = IdMap(db, post=group.post_soon)
        flusher = asyncio.ensure_future(group.flusher()) if grouped else None
        await asyncio.sleep(0)
        latencies: list[float] = []
        queue = iter(range(writes))

        async def worker() -> None:
            for i in queue:
                started = time.perf_counter()
                entry = await log.intent(
                    idem_key=f"k{i}",
                    user="u",
                    route="r",
                    method="POST",
                    path="/v1/memories",
                    body=b"x" * 200,
                    keys=(),
                    depends=(),
                    primary="legacy",
                )
                latencies.append(time.perf_counter() - started)
                await asyncio.sleep(0)  # the primary and the mirror answer
                await idmap.record("memory", entry, entry + 1_000_000, wait=not grouped)
                if grouped:
                    log.end_soon(entry)
                else:
                    await log.forget(entry)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if flusher:
            await group.commit_now()
        elapsed = time.perf_counter() - started
        if flusher:
            flusher.cancel()
        db.close()
        return {
            "writes_per_s": writes / elapsed,
            "intent_p50_ms": percentile(latencies, 50) * 1000,
            "intent_p99_ms": percentile(latencies, 99) * 1000,
            "ops_per_commit": group.operations / max(group.commits, 1) if grouped else 1.0,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    results = {
        name: asyncio.run(run(args.writes, args.concurrency, grouped))
        for name, grouped in (("one commit per operation", False), ("group commit", True))
    }
    rows = [
        [
            n,
            f"{r['writes_per_s']:.0f}",
            f"{r['intent_p50_ms']:.2f}",
            f"{r['intent_p99_ms']:.2f}",
            f"{r['ops_per_commit']:.1f}",
        ]
        for n, r in results.items()
    ]
    report(
        "write_log",
        ["log", "writes/s", "intent_p50_ms", "intent_p99_ms", "ops/commit"],
        rows,
        {"writes": args.writes, "concurrency": args.concurrency, "results": results},
    )


if __name__ == "__main__":
    main()

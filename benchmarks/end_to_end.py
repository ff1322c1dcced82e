"""The loadtest mix against the reference stores on SQLite: directly and through memshift.

    python -m benchmarks.end_to_end [--duration S] [--concurrency C]

Each scenario starts fresh stores (SQLite, as separate processes) so that each runs
on stores of the same size. The load generator is ``memshift loadtest`` with its
default mix (create 20, read 60, search 15, update 5) and content sizes (100 B to
100 KB). Scenarios:

  direct            the legacy store alone;
  memshift 0/0      through memshift, reads from legacy, no shadow reads;
  memshift 50/100   through memshift, half the callers read from new, every read
                    compared (the middle of a migration).

Everything shares this machine's two cores: stores, proxy and load generator.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from benchmarks.harness import loadtest, proxy_process, report, store_process

SCENARIOS = ("direct", "memshift 0/0", "memshift 50/100")


@contextlib.contextmanager
def target(scenario: str) -> Iterator[str]:
    with store_process("legacy") as legacy:
        if scenario == "direct":
            yield legacy.url
            return
        with store_process("new") as new:
            read, shadow = (0, 0) if scenario == "memshift 0/0" else (50, 100)
            with proxy_process(legacy.url, new.url, shadow=shadow, read_percent=read) as url:
                yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = {}
    for scenario in SCENARIOS:
        with target(scenario) as url:
            results[scenario] = loadtest(
                url,
                "create=20,read=60,search=15,update=5",
                args.concurrency,
                args.duration,
                sizes="100=40,1000=30,10000=20,50000=7,100000=3",
            )
        print(f"  {scenario}: {results[scenario]['total']['throughput_rps']:.0f} req/s", flush=True)
    rows = []
    for scenario, doc in results.items():
        for op, s in [*doc["operations"].items(), ("total", doc["total"])]:
            rows.append(
                [
                    scenario,
                    op,
                    s["count"],
                    s["errors"],
                    f"{s['throughput_rps']:.1f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p95_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                ]
            )
    report(
        "end_to_end",
        ["scenario", "op", "count", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms"],
        rows,
        {"duration_s": args.duration, "concurrency": args.concurrency, "results": results},
    )


if __name__ == "__main__":
    main()

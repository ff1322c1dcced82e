"""memshift's store client against aiohttp's, side by side, on the same store answers.

    python -m benchmarks.store_client [--requests N] [--concurrency C] [--rounds R]

Both clients fetch the same fixed memory (a 1 KB JSON answer, as the reference store
gives) from nginx on CPU 0, from one process pinned to CPU 1, ``--requests`` at a
time with ``--concurrency`` in flight, whole answers and streamed ones (read chunk
by chunk, as MCP's SSE is). Rounds take whole and streamed answers in turn, and the
two clients in turn in either order, so that the machine's drift touches all alike;
each figure is the median of the rounds, and the ratio is taken round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp

from benchmarks.harness import report, static_backends
from memshift.links.http import HttpLink
from memshift.runtime import run_async

PATH = "/v1/memories/1"


async def _drive(fetch: Callable[[], Awaitable[int]], requests: int, concurrency: int) -> float:
    """Requests per second of ``fetch`` run ``requests`` times, ``concurrency`` at once."""
    left = iter(range(requests))

    async def worker() -> None:
        for _ in left:
            assert await fetch() == 200

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return requests / (time.perf_counter() - started)


async def _round(
    url: str, requests: int, concurrency: int, stream: bool, flip: bool
) -> dict[str, float]:
    parts = urlsplit(url)
    link = HttpLink("legacy", "http", parts.hostname or "", parts.port or 80,
                    connect_timeout_s=2, read_timeout_s=30)  # fmt: skip
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def ours() -> int:
        if not stream:
            return (await link.request("GET", PATH, [], b"")).status
        async with link.stream("GET", PATH, [], b"") as answer:
            async for _ in answer.chunks:
                pass
            return answer.status

    async def theirs() -> int:
        async with session.get(url + PATH) as answer:
            if stream:
                async for _ in answer.content.iter_any():
                    pass
            else:
                await answer.read()
            return answer.status

    clients = {"memshift": ours, "aiohttp": theirs}
    order = ["aiohttp", "memshift"] if flip else ["memshift", "aiohttp"]
    try:
        for name in order:  # warm both up
            await _drive(clients[name], 500, concurrency)
        return {name: await _drive(clients[name], requests, concurrency) for name in order}
    finally:
        link.close()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    rows, data = [], {}
    with static_backends(1, cpus="0") as urls:
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for n in range(args.rounds):  # whole and streamed, in turn, each order in turn
            for stream in (False, True):
                rounds = runs[stream]
                rounds.append(
                    run_async(_round(urls[0], args.requests, args.concurrency, stream, n % 2 == 1))
                )
        for stream, rounds in runs.items():
            mine = statistics.median(r["memshift"] for r in rounds)
            theirs = statistics.median(r["aiohttp"] for r in rounds)
            ratio = statistics.median(r["memshift"] / r["aiohttp"] for r in rounds)
            what = "streamed" if stream else "whole"
            rows.append([what, f"{mine:,.0f}", f"{theirs:,.0f}", f"{ratio:.2f}x"])
            data[what] = {"memshift_per_s": mine, "aiohttp_per_s": theirs, "ratio": ratio}
    report(
        "store_client",
        ["answers", "memshift req/s", "aiohttp req/s", "memshift / aiohttp"],
        rows,
        data | {"requests": args.requests, "concurrency": args.concurrency},
    )


if __name__ == "__main__":
    main()

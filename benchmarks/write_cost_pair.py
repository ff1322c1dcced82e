"""The proxy's CPU per mirrored write, this tree against another, in turn.

    git worktree add /tmp/before COMMIT
    python -m benchmarks.write_cost_pair /tmp/before/src [--rounds 4] [--duration 6]

nginx stands in for both stores (as in ``proxy_cost``); a proxy from each tree in turn
(A B, B A, ...) takes creates at 16 in flight, and the CPU its process family spent
per write is compared round by round, so that the machine's drift touches both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from benchmarks.harness import cpu_seconds, loadtest, proxy_process, static_backends

HERE = str(Path(__file__).resolve().parents[1] / "src")


def per_write(legacy: str, new: str, tree: str, duration: float) -> float:
    """Microseconds of proxy CPU per mirrored create, for the proxy of ``tree``."""
    os.environ["PYTHONPATH"] = tree  # the proxy process imports memshift from there
    with proxy_process(legacy, new, cpus="1") as url:
        loadtest(url, "create=100", 16, 2, cpus="0")  # warm up
        before = cpu_seconds(url)
        doc = loadtest(url, "create=100", 16, duration, cpus="0")
        return (cpu_seconds(url) - before) / float(doc["total"]["count"]) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("other", help="the src folder of the tree to compare with")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=6.0)
    args = parser.parse_args()
    trees = [("this", HERE), ("other", args.other)]
    found: dict[str, list[float]] = {name: [] for name, _ in trees}
    with static_backends(2, cpus="0") as (legacy, new):
        for at in range(args.rounds):
            for name, tree in trees if at % 2 == 0 else trees[::-1]:
                found[name].append(per_write(legacy, new, tree, args.duration))
                print(f"round {at + 1}: {name} {found[name][-1]:.0f} µs/write", flush=True)
    ratios = [a / b for a, b in zip(found["this"], found["other"], strict=True)]
    print(
        f"this {statistics.median(found['this']):.0f} µs/write, other "
        f"{statistics.median(found['other']):.0f}; this/other per round "
        f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})"
    )


if __name__ == "__main__":
    main()
